"""Parameter, memory, KV-cache and FLOPs reports against closed forms written here,
published figures, Korthikanti et al.'s activation formula, and caches the models
actually fill."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

import archzoo
from archzoo.config import config_paths, load_config
from archzoo.inspect import COMPONENTS, count_params, estimate_memory, kv_bytes_per_token
from archzoo.inspect.activations import activation_bytes, layer_values_per_token
from archzoo.inspect.blocks import BlockSize, measure_block

ALL_CONFIGS = sorted(config_paths())
TINY_CONFIGS = [name for name in ALL_CONFIGS if name.endswith("-tiny")]


# ---- closed forms, per layer, from the papers' block definitions -----------------------
def norm_size(cfg, width: int) -> int:
    return 2 * width if cfg.norm.kind == "layernorm" else width  # LayerNorm has a bias


def attention_params(cfg) -> tuple[int, int]:
    """(projection weights and biases, norm gains inside attention) of one layer."""
    d, a = cfg.model.d_model, cfg.attention
    if a.kind == "mla":
        h, nope, rope, v, r, rq = (
            a.n_heads,
            a.qk_nope_head_dim,
            a.qk_rope_head_dim,
            a.v_head_dim,
            a.kv_lora_rank,
            a.q_lora_rank,
        )
        q = d * rq + rq * h * (nope + rope) if rq else d * h * (nope + rope)
        kv = d * (r + rope) + r * h * (nope + v)
        return q + kv + h * v * d, r + rq  # latent norms are RMSNorms
    h = a.n_heads
    kv = a.n_kv_heads or h
    hd = a.head_dim or d // h
    weights = d * h * hd + 2 * d * kv * hd + h * hd * d
    biases = (h * hd + 2 * kv * hd if a.qkv_bias else 0) + (d if a.o_bias else 0)
    return weights + biases, (2 * hd if a.qk_norm else 0)


def mlp_params(d: int, hidden: int, kind: str, bias: bool) -> int:
    if kind == "gelu":
        return 2 * d * hidden + (hidden + d if bias else 0)
    return 3 * d * hidden + (2 * hidden + d if bias else 0)


def is_moe(cfg, i: int) -> bool:
    m = cfg.moe
    return m is not None and i >= m.first_dense_layers and i not in m.dense_layers and (i + 1) % m.sparse_step == 0


def closed_form(cfg) -> dict[str, int]:
    d, vocab, layers = cfg.model.d_model, cfg.model.vocab_size, cfg.model.n_layers
    rows = dict.fromkeys(COMPONENTS, 0)
    rows["embeddings"] = vocab * d
    rows["lm_head"] = 0 if cfg.model.tie_embeddings else vocab * d
    attention, attention_norms = attention_params(cfg)
    norms_per_layer = 4 if cfg.norm.placement == "sandwich" else 2
    final_norm = cfg.norm.placement in ("pre", "sandwich") or cfg.norm.residual_from_normed
    rows["norms"] = layers * (norms_per_layer * norm_size(cfg, d) + attention_norms)
    rows["norms"] += norm_size(cfg, d) * (int(final_norm) + int(cfg.model.embedding_norm))
    rows["attention"] = layers * attention
    for i in range(layers):
        if not is_moe(cfg, i):
            rows["mlp"] += mlp_params(d, cfg.mlp_hidden, cfg.mlp.kind, cfg.mlp.bias)
            continue
        m = cfg.moe
        rows["routed_experts"] += m.n_experts * 3 * d * m.expert_hidden
        rows["router"] += m.n_experts * d
        shared = m.shared_hidden or m.n_shared_experts * m.expert_hidden
        rows["shared_experts"] += 3 * d * shared + (d if m.shared_gate else 0)
    return rows


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_components_match_closed_form_and_sum_to_total(name):
    cfg = load_config(name)
    report = count_params(cfg)
    assert report.components == closed_form(cfg)
    assert sum(report.components.values()) == report.total
    assert sum(report.active_components.values()) == report.active
    assert report.embedding + report.non_embedding == report.total
    assert report.embedding == report.components["embeddings"] + report.components["lm_head"]


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_active_is_total_minus_unused_experts(name):
    cfg = load_config(name)
    report = count_params(cfg)
    unused = 0
    if cfg.moe is not None:
        moe_layers = sum(is_moe(cfg, i) for i in range(cfg.model.n_layers))
        unused = moe_layers * (cfg.moe.n_experts - cfg.moe.top_k) * 3 * cfg.model.d_model * cfg.moe.expert_hidden
    assert report.active == report.total - unused


@pytest.mark.parametrize(
    "name, published",
    [("qwen3-30b-a3b", 3.3e9), ("qwen3-235b-a22b", 22e9), ("deepseek-v3", 37e9)],
)
def test_active_counts_match_published(name, published):
    assert name in ALL_CONFIGS, f"config {name} is missing under configs/"
    assert count_params(name).active == pytest.approx(published, rel=0.03)


def test_deepseek_v3_buffer_and_mtp_reported_apart():
    assert "deepseek-v3" in ALL_CONFIGS, "config deepseek-v3 is missing under configs/"
    cfg = load_config("deepseek-v3")
    report = count_params(cfg)
    moe_layers = cfg.model.n_layers - cfg.moe.first_dense_layers
    assert report.buffers == {"layers.*.mlp.router.e_score_correction_bias": moe_layers * cfg.moe.n_experts}
    # DeepSeek-V3 report: 671B main model + 14B MTP module as released, which stores its own
    # copies of the embedding and the output head (2 x 129280 x 7168).
    assert report.total == pytest.approx(671e9, rel=0.005)
    stored_mtp = report.mtp + 2 * cfg.model.vocab_size * cfg.model.d_model
    assert stored_mtp == pytest.approx(14e9, rel=0.05)


@pytest.mark.parametrize("name", [n for n in ALL_CONFIGS if load_config(n).model.mtp_layers])
def test_mtp_module_closed_form(name):
    # DeepSeek-V3 Sec. 2.2: RMSNorm on h and on Emb(t), W [d, 2d], one (MoE) layer, a final norm;
    # embedding and output head shared with the main model
    cfg = load_config(name)
    d, m = cfg.model.d_model, cfg.moe
    attention, attention_norms = attention_params(cfg)
    shared = m.shared_hidden or m.n_shared_experts * m.expert_hidden
    moe = m.n_experts * 3 * d * m.expert_hidden + m.n_experts * d + 3 * d * shared
    layer = attention + attention_norms + 2 * d + moe
    assert count_params(cfg).mtp == cfg.model.mtp_layers * (layer + 3 * d + 2 * d * d)


def test_tied_head_counted_once():
    cfg = load_config("llama-tiny")
    tied = cfg.replace(model=dataclasses.replace(cfg.model, tie_embeddings=True))
    untied_report, tied_report = count_params(cfg), count_params(tied)
    assert tied_report.tied_embeddings and tied_report.components["lm_head"] == 0
    assert untied_report.total - tied_report.total == cfg.model.vocab_size * cfg.model.d_model


# ---- KV cache ------------------------------------------------------------------------
def test_kv_bytes_per_token_of_released_models():
    # Llama-2-70B: GQA with 8 kv heads of 128, 80 layers, K and V, bf16
    assert estimate_memory("llama2-70b", seq_len=1).kv_bytes_per_token == 2 * 8 * 128 * 80 * 2 == 327_680
    # Qwen3-8B: head_dim 128 is set (32 heads x 128 = 4096 = d_model here), 8 kv heads, 36 layers
    assert kv_bytes_per_token(load_config("qwen3-8b"), "bf16") == 2 * 8 * 128 * 36 * 2
    # DeepSeek-V3: absorbed MLA caches the 512 latent + the 64 rope key per layer, 61 layers
    v3 = load_config("deepseek-v3")
    assert kv_bytes_per_token(v3, "bf16") == (512 + 64) * 61 * 2
    naive = v3.replace(attention=dataclasses.replace(v3.attention, mla_mode="naive"))
    assert kv_bytes_per_token(naive, "bf16") == 128 * (128 + 64 + 128) * 61 * 2


def test_kv_uses_configured_head_dim_not_d_model_over_heads():
    # Qwen3-0.6B: 16 heads x head_dim 128 = 2048 != d_model 1024
    cfg = load_config("qwen3-0.6b")
    assert cfg.model.d_model // cfg.attention.n_heads != 128
    assert kv_bytes_per_token(cfg, "fp16") == 2 * 8 * 128 * 28 * 2


MLA_TINY = [name for name in TINY_CONFIGS if load_config(name).attention.kind == "mla"]


@pytest.mark.parametrize(
    "name, mla_mode", [(name, None) for name in TINY_CONFIGS] + [(name, "naive") for name in MLA_TINY]
)
def test_kv_bytes_equal_the_cache_a_model_fills(name, mla_mode):
    cfg = load_config(name)
    if mla_mode is not None:
        cfg = cfg.replace(attention=dataclasses.replace(cfg.attention, mla_mode=mla_mode))
    model = archzoo.build_model(cfg).eval()
    cache = model.new_cache(8)
    with torch.no_grad():
        model(torch.randint(0, 100, (2, 5)), cache=cache)
    stored = sum(b.numel() * b.element_size() for layer in cache.layers for b in layer.buffers.values())
    filled = stored // cache.max_len // 2  # per slot, per sequence of the batch
    assert kv_bytes_per_token(cfg, "fp32") == filled


# ---- weights, training, activations, FLOPs ---------------------------------------------------
def test_weight_and_training_bytes():
    mem = estimate_memory("llama2-7b", batch=2, seq_len=128, dtype="int4")
    n = 6_738_415_616  # Llama-2-7B, the released checkpoint's count
    assert mem.params == n
    assert {k: mem.weight_bytes[k] for k in ("fp32", "bf16", "fp8")} == {"fp32": 4 * n, "bf16": 2 * n, "fp8": n}
    # int8 / int4: the quantized model's bytes (tests/models/test_quant_memory.py); KV cache bf16
    assert mem.kv_cache_bytes == 2 * 128 * (2 * 32 * 128 * 32) * 2
    assert mem.inference_bytes == mem.weight_bytes["int4"] + mem.kv_cache_bytes
    assert sum(mem.training_state_bytes.values()) == 16 * n  # ZeRO: 2 + 2 + 4 + 4 + 4
    assert mem.training_bytes == 16 * n + mem.activation_bytes


def gpt_config(d=1024, heads=16, layers=4, vocab=1000):
    return archzoo.Config.from_dict(
        {
            "name": "gpt",
            "family": "gpt",
            "model": {"vocab_size": vocab, "d_model": d, "n_layers": layers},
            "norm": {"kind": "layernorm"},
            "attention": {"n_heads": heads},
            "mlp": {"kind": "gelu", "hidden": 4 * d},
        }
    )


@pytest.mark.parametrize("seq", [128, 2048])
def test_activations_reproduce_korthikanti_for_their_gpt_layer(seq):
    cfg = gpt_config()
    h, a = cfg.model.d_model, cfg.attention.n_heads
    plan = cfg.layer_plan[0]
    per_token = layer_values_per_token(cfg, plan, seq, dropout=True, scores_stored=True)
    # Korthikanti et al. 2022, eq. (1): s b h (34 + 5 a s / h) per layer
    assert per_token * seq == pytest.approx(seq * h * (34 + 5 * a * seq / h))


def test_activation_adaptations_for_gqa_swiglu_and_checkpointing():
    cfg = gpt_config()
    plan = cfg.layer_plan[0]
    d, s = cfg.model.d_model, 256
    base = layer_values_per_token(cfg, plan, s)  # no dropout, fused attention
    assert base == 2 * (2 * d) + 2 * d + 2 * (4 * d) + 4 * 16 + 2 * d + 2 * 2 * (4 * d)
    gqa = cfg.replace(attention=dataclasses.replace(cfg.attention, n_kv_heads=4))
    assert base - layer_values_per_token(gqa, plan, s) == 2 * 2 * (16 - 4) * 64  # K and V shrink
    swiglu = cfg.replace(mlp=dataclasses.replace(cfg.mlp, kind="swiglu"))
    assert layer_values_per_token(swiglu, plan, s) - base == 2 * 4 * d  # one more d_ff-wide value
    full = activation_bytes(cfg, 2, s)
    ckpt = activation_bytes(cfg, 2, s, checkpointing=True)
    outside = 2 * 2 * d + 4 * cfg.model.vocab_size
    assert full == 2 * s * (4 * base + outside)
    assert ckpt == 2 * s * (4 * 2 * d + base + outside)


def test_flops_six_n_plus_attention():
    cfg = load_config("llama2-7b")
    mem = estimate_memory(cfg, seq_len=4096)
    n_matmul = 6_738_415_616 - 32000 * 4096  # the embedding lookup costs nothing; the head is a matmul
    attention = 32 * 2 * 4096 * (2 * 32 * 128)  # q.K^T and p.V per layer
    assert mem.flops.forward_per_token == 2 * n_matmul + attention
    assert mem.flops.training_per_token == 6 * n_matmul + 3 * attention
    moe = estimate_memory("qwen3-30b-a3b", seq_len=1)
    assert moe.flops.matmul_params == moe.active_params - 151936 * 2048  # only active experts
    tied = estimate_memory("qwen2.5-0.5b", seq_len=1)
    assert tied.flops.matmul_params == tied.params  # the tied matrix is both lookup and head


def test_estimate_memory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="dtype"):
        estimate_memory("llama-tiny", dtype="fp12")
    with pytest.raises(ValueError, match="batch"):
        estimate_memory("llama-tiny", batch=0)
    with pytest.raises(ValueError, match="seq_len"):
        estimate_memory("llama-tiny", seq_len=-1)


# ---- blocks alone ---------------------------------------------------------------------------
SMALL = BlockSize(d_model=64, n_heads=4, n_kv_heads=2, seq_len=8)


def test_attention_blocks_params_flops_and_kv():
    d, hd, s = 64, 16, 8
    expected = {
        "mha": (4 * d * d, 2 * 4 * hd),
        "gqa": (2 * d * d + 2 * d * 2 * hd, 2 * 2 * hd),
        "mqa": (2 * d * d + 2 * d * hd, 2 * hd),
    }
    r, rope, rq = 4 * hd, hd // 2, 12 * hd  # MLA defaults: DeepSeek-V3's ratios to head_dim
    mla = d * rq + rq + rq * 4 * (hd + rope) + d * (r + rope) + r + r * 4 * (hd + hd) + 4 * hd * d
    expected["mla"] = (mla, r + rope)
    for variant, (params, kv) in expected.items():
        report = measure_block("attention", variant, SMALL, repeats=1)
        assert report.params == params, variant
        assert report.kv_values_per_token == report.kv_values_measured == kv, variant
        assert report.kv_bytes_per_token == 2 * kv  # bf16
        weights = params - (r + rq if variant == "mla" else 0)  # latent norm gains are not matmuls
        width_qk = 4 * (hd + rope) if variant == "mla" else d
        assert report.flops_per_token == 2 * weights + 2 * s * (width_qk + d), variant


def test_mlp_blocks_and_iso_params():
    d, h = 64, 256
    plain = {v: measure_block("mlp", v, SMALL, repeats=1) for v in ("gelu", "swiglu", "geglu")}
    assert plain["gelu"].params == 2 * d * h
    assert plain["swiglu"].params == plain["geglu"].params == 3 * d * h
    assert plain["swiglu"].flops_per_token == 2 * 3 * d * h
    iso = dataclasses.replace(SMALL, iso_params=True)
    gated = measure_block("mlp", "swiglu", iso, repeats=1)
    assert gated.params == 3 * d * round(2 * h / 3)
    assert gated.params == pytest.approx(plain["gelu"].params, rel=0.01)
    assert measure_block("mlp", "gelu", iso, repeats=1).params == 2 * d * h  # the plain MLP is the yardstick


def test_norm_and_position_blocks():
    layer = measure_block("norm", "layernorm", SMALL, repeats=1)
    rms = measure_block("norm", "rmsnorm", SMALL, repeats=1)
    assert (layer.params, rms.params) == (2 * 64, 64)
    assert layer.output_mean == pytest.approx(0, abs=1e-5)  # LayerNorm centres, default gain 1 bias 0
    assert layer.output_std == pytest.approx(1, abs=0.01) and rms.output_std == pytest.approx(1, abs=0.05)
    reports = {v: measure_block("position", v, SMALL, repeats=1) for v in ("rope", "alibi", "none")}
    assert all(r.params == 0 for r in reports.values())
    assert reports["alibi"].note.startswith("4 fixed slopes")  # one per head, nothing learned
    assert reports["rope"].flops_per_token == 3 * 2 * 4 * 16
    assert reports["alibi"].flops_per_token == 4 * 8
    means = {v: r.output_mean for v, r in reports.items()}
    assert len(set(means.values())) == 3  # same weights and input, three different position signals


def test_docs_memory_tables_are_up_to_date():
    path = Path(__file__).resolve().parent.parent / "docs" / "make_memory_table.py"
    spec = importlib.util.spec_from_file_location("make_memory_table", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--check"]) == 0, "run: python docs/make_memory_table.py"
