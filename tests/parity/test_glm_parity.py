"""GLM family checkpoints and counts.

* transformers ``GlmForCausalLM`` (GLM-4-9B): same random weights, logits within
  1e-5 (float32) on a left-padded batch, through ``save_pretrained`` folders in
  both directions; parameter count of the default ``GlmConfig`` on ``meta``.
* ChatGLM-6B / ChatGLM2 remote-code layouts (not on PyPI): the test writes a
  folder in that layout itself, from an archzoo model, following the layout
  described in docs/glm.md (§2.3, §4): per-head interleaved
  [q_j | k_j | v_j] for v1, [Q | K | V] blocks and a gate-first fused
  ``dense_h_to_4h`` for v2. Loading it back must give identical logits.
* Fused gated MLP halves in both orders against a hand-computed fused MLP.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file

import archzoo
import tolerances as tol
from archzoo.blocks.mlp import GeGLU, SwiGLU
from archzoo.glm import blank_infilling, prefix_lm_inputs
from archzoo.models.hf.chatglm import config_from_hf as chatglm_config_from_hf
from archzoo.models.hf.glm import config_from_hf as glm_config_from_hf
from archzoo.models.hf.glm import fuse_gated, split_gated

TOLERANCE = 1e-5


def sections(cfg: archzoo.Config) -> dict:
    """The architecture sections, head_dim made explicit (a config may leave it derived)."""
    out = {name: getattr(cfg, name) for name in ("model", "norm", "position", "mlp")}
    out["attention"] = replace(cfg.attention, head_dim=cfg.head_dim)
    return out


def _logits(model, ids, mask=None, **kwargs):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, **kwargs)
    return out.logits if hasattr(out, "logits") else out


# ---- transformers GlmForCausalLM -------------------------------------------------------------


def test_glm4_logits_match_transformers(hf_folder, padded_batch, tmp_path):
    config = transformers.GlmConfig(
        vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    assert config.rope_parameters["partial_rotary_factor"] == 0.5 and config.attention_bias
    torch.manual_seed(0)
    hf_model = transformers.GlmForCausalLM(config)
    model = archzoo.load_pretrained(hf_folder(hf_model))
    c = model.config
    assert (c.position.layout, c.rotary_dim, c.attention.qkv_bias, c.attention.o_bias) == ("interleaved", 8, True, False)
    ids, mask = padded_batch(config.vocab_size)
    expected = _logits(hf_model, ids, mask)
    real = mask.bool()
    assert (_logits(model, ids, mask) - expected)[real].abs().max() < TOLERANCE

    folder = archzoo.save_pretrained(model, tmp_path / "ours")
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["GlmForCausalLM"]
    reloaded = transformers.GlmForCausalLM.from_pretrained(folder)
    assert (_logits(reloaded, ids, mask) - expected)[real].abs().max() < TOLERANCE


def test_glm4_9b_config_and_count_match_transformers_defaults():
    with torch.device("meta"):
        reference = transformers.GlmForCausalLM(transformers.GlmConfig())
    expected = sum(p.numel() for p in reference.parameters())
    assert expected == 9_399_951_360
    assert archzoo.count_params("glm4-9b").total == expected
    ours = archzoo.load_config("glm4-9b")
    mapped = archzoo.Config.from_dict(glm_config_from_hf(transformers.GlmConfig().to_dict(), "glm4-9b"))
    assert sections(mapped) == sections(ours)
    assert ours.norm.eps == 1.5625e-7


def test_released_counts():
    assert archzoo.count_params("chatglm2-6b").total == 6_243_584_000
    report = archzoo.count_params("chatglm-6b")
    assert report.total == 6_707_929_088
    # the seed text's "6.2B" is the model counted with one embedding matrix
    cfg = archzoo.load_config("chatglm-6b")
    one_matrix = cfg.model.vocab_size * cfg.model.d_model
    assert one_matrix == 534_642_688
    assert report.total - one_matrix == 6_173_286_400
    assert "6,173,286,400" in cfg.description and "6,707,929,088" in cfg.description


# ---- ChatGLM-6B (v1) layout ------------------------------------------------------------------


def perturbed(name: str) -> archzoo.CausalLM:
    torch.manual_seed(1)
    model = archzoo.build_model(name).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def write_folder(folder, config: dict, tensors: dict) -> None:
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))


def chatglm6b_checkpoint(model) -> dict:
    """ChatGLM-6B names; query_key_value rows per head: [q_0 k_0 v_0 | q_1 k_1 v_1 | ...]."""
    sd, cfg = model.state_dict(), model.config
    heads, hd = cfg.n_heads, cfg.head_dim
    out = {"transformer.word_embeddings.weight": sd["embed.weight"], "lm_head.weight": sd["lm_head.weight"]}
    for i in range(cfg.model.n_layers):
        ours, theirs = f"layers.{i}.", f"transformer.layers.{i}."
        for p in ("weight", "bias"):
            q, k, v = (sd[f"{ours}attn.{n}_proj.{p}"] for n in "qkv")
            per_head = [torch.cat([t[j * hd : (j + 1) * hd] for t in (q, k, v)]) for j in range(heads)]
            out[f"{theirs}attention.query_key_value.{p}"] = torch.cat(per_head)
            out[f"{theirs}attention.dense.{p}"] = sd[f"{ours}attn.o_proj.{p}"]
            out[f"{theirs}input_layernorm.{p}"] = sd[f"{ours}attn_norm.{p}"]
            out[f"{theirs}post_attention_layernorm.{p}"] = sd[f"{ours}mlp_norm.{p}"]
            out[f"{theirs}mlp.dense_h_to_4h.{p}"] = sd[f"{ours}mlp.up_proj.{p}"]
            out[f"{theirs}mlp.dense_4h_to_h.{p}"] = sd[f"{ours}mlp.down_proj.{p}"]
        # the cached rotary buffer real checkpoints carry (ignored on load)
        out[f"{theirs}attention.rotary_emb.inv_freq"] = 1.0 / 10000 ** (torch.arange(0, hd // 2, 2).float() / (hd // 2))
    out["transformer.final_layernorm.weight"] = sd["final_norm.weight"]
    out["transformer.final_layernorm.bias"] = sd["final_norm.bias"]
    return out


CHATGLM6B_TINY_CONFIG = {
    "architectures": ["ChatGLMModel"], "model_type": "chatglm", "vocab_size": 512, "hidden_size": 128,
    "inner_hidden_size": 512, "num_layers": 2, "num_attention_heads": 4, "max_sequence_length": 256,
    "layernorm_epsilon": 1e-5, "position_encoding_2d": True, "bos_token_id": 504, "eos_token_id": 505,
    "mask_token_id": 500, "gmask_token_id": 501, "pad_token_id": 3, "pre_seq_len": None,
    "quantization_bit": 0, "torch_dtype": "float32",
}  # fmt: skip


def test_chatglm6b_layout_loads_to_identical_logits(tmp_path):
    model = perturbed("glm-tiny")
    folder = tmp_path / "chatglm6b"
    tensors = chatglm6b_checkpoint(model)
    write_folder(folder, CHATGLM6B_TINY_CONFIG, tensors)
    loaded = archzoo.load_pretrained(folder)
    assert loaded.config.deepnorm_alpha == pytest.approx(math.sqrt(56))  # fixed, though n_layers = 2
    assert (loaded.config.position.kind, loaded.config.position.fp16_frequencies) == ("glm2d", True)

    t = loaded.config.tokens
    sample = blank_infilling(torch.arange(30, 46), [(9, 12), (3, 5)], mask_id=t.mask_id, sop_id=t.sop_id, eop_id=t.eop_id)
    batch = sample.batch()
    ids = batch.pop("input_ids")
    kw = {"position_ids": batch["position_ids"], "mask": batch["attention_mask"]}
    assert torch.equal(_logits(loaded, ids, **kw), _logits(model, ids, **kw))
    ids = torch.tensor([40, 41, 42, t.gmask_id, t.sop_id, 50])
    p = prefix_lm_inputs(ids, gmask_id=t.gmask_id, mask_id=t.mask_id, sop_id=t.sop_id)
    kw = {"position_ids": p.position_ids[None], "mask": p.attention_mask[None]}
    assert torch.equal(_logits(loaded, ids[None], **kw), _logits(model, ids[None], **kw))

    # and back: the same tensors under the same names (the rotary buffer is not written)
    back = archzoo.save_pretrained(loaded, tmp_path / "back")
    written = archzoo.models.hf.io.read_safetensors(back)
    expected = {k: v for k, v in tensors.items() if not k.endswith("inv_freq")}
    assert sorted(written) == sorted(expected)
    assert all(torch.equal(written[k], expected[k]) for k in expected)
    config = json.loads((back / "config.json").read_text())
    assert {k: config[k] for k in ("hidden_size", "inner_hidden_size", "num_layers", "mask_token_id", "bos_token_id")} == {
        "hidden_size": 128, "inner_hidden_size": 512, "num_layers": 2, "mask_token_id": 500, "bos_token_id": 504,
    }  # fmt: skip


def test_chatglm6b_config_maps_to_the_chatglm_6b_toml():
    hub = {**CHATGLM6B_TINY_CONFIG, "vocab_size": 130528, "hidden_size": 4096, "inner_hidden_size": 16384,
           "num_layers": 28, "num_attention_heads": 32, "max_sequence_length": 2048, "bos_token_id": 130004,
           "eos_token_id": 130005, "mask_token_id": 130000, "gmask_token_id": 130001}  # fmt: skip
    mapped = archzoo.Config.from_dict(chatglm_config_from_hf(hub, "chatglm-6b"))
    ours = archzoo.load_config("chatglm-6b")
    assert sections(mapped) == sections(ours)
    assert mapped.tokens == replace(ours.tokens, smask_id=None)  # config.json has no [sMASK] id


# ---- ChatGLM2 (v2) layout --------------------------------------------------------------------


def chatglm2_checkpoint(model) -> dict:
    """ChatGLM2 names; query_key_value rows [Q | K | V]; dense_h_to_4h rows [gate | up]."""
    sd, cfg = model.state_dict(), model.config
    out = {
        "transformer.embedding.word_embeddings.weight": sd["embed.weight"],
        "transformer.output_layer.weight": sd["lm_head.weight"],
        "transformer.encoder.final_layernorm.weight": sd["final_norm.weight"],
        "transformer.rotary_pos_emb.inv_freq": 1.0 / 10000 ** (torch.arange(0, cfg.head_dim // 2, 2).float() / (cfg.head_dim // 2)),
    }
    for i in range(cfg.model.n_layers):
        ours, theirs = f"layers.{i}.", f"transformer.encoder.layers.{i}."
        for p in ("weight", "bias"):
            out[f"{theirs}self_attention.query_key_value.{p}"] = torch.cat([sd[f"{ours}attn.{n}_proj.{p}"] for n in "qkv"])
        out[f"{theirs}self_attention.dense.weight"] = sd[f"{ours}attn.o_proj.weight"]
        out[f"{theirs}input_layernorm.weight"] = sd[f"{ours}attn_norm.weight"]
        out[f"{theirs}post_attention_layernorm.weight"] = sd[f"{ours}mlp_norm.weight"]
        out[f"{theirs}mlp.dense_h_to_4h.weight"] = torch.cat([sd[f"{ours}mlp.gate_proj.weight"], sd[f"{ours}mlp.up_proj.weight"]])
        out[f"{theirs}mlp.dense_4h_to_h.weight"] = sd[f"{ours}mlp.down_proj.weight"]
    return out


CHATGLM2_TINY_CONFIG = {
    "architectures": ["ChatGLMModel"], "model_type": "chatglm", "padded_vocab_size": 512, "vocab_size": 512,
    "hidden_size": 128, "ffn_hidden_size": 344, "num_layers": 2, "num_attention_heads": 4, "kv_channels": 32,
    "multi_query_attention": True, "multi_query_group_num": 2, "seq_length": 256, "layernorm_epsilon": 1e-5,
    "rmsnorm": True, "add_bias_linear": False, "add_qkv_bias": True, "apply_residual_connection_post_layernorm": False,
    "post_layer_norm": True, "original_rope": True, "tie_word_embeddings": False, "eos_token_id": 2, "pad_token_id": 0,
}  # fmt: skip


def test_chatglm2_layout_loads_to_identical_logits(tmp_path, padded_batch):
    model = perturbed("chatglm2-tiny")
    folder = tmp_path / "chatglm2"
    tensors = chatglm2_checkpoint(model)
    write_folder(folder, CHATGLM2_TINY_CONFIG, tensors)
    loaded = archzoo.load_pretrained(folder)
    ids, mask = padded_batch(512)
    assert torch.equal(_logits(loaded, ids, mask), _logits(model, ids, mask))
    back = archzoo.save_pretrained(loaded, tmp_path / "back")
    written = archzoo.models.hf.io.read_safetensors(back)
    expected = {k: v for k, v in tensors.items() if not k.endswith("inv_freq")}
    assert sorted(written) == sorted(expected)
    assert all(torch.equal(written[k], expected[k]) for k in expected)


def test_chatglm2_config_maps_to_the_chatglm2_6b_toml():
    hub = {**CHATGLM2_TINY_CONFIG, "padded_vocab_size": 65024, "vocab_size": 65024, "hidden_size": 4096,
           "ffn_hidden_size": 13696, "num_layers": 28, "num_attention_heads": 32, "kv_channels": 128,
           "seq_length": 32768}  # fmt: skip
    mapped = archzoo.Config.from_dict(chatglm_config_from_hf(hub, "chatglm2-6b"))
    ours = archzoo.load_config("chatglm2-6b")
    assert sections(mapped) == sections(ours)
    glm4_chat = chatglm_config_from_hf({**hub, "rope_ratio": 500}, "glm-4-9b-chat")
    assert glm4_chat["position"]["theta"] == 5e6


# ---- fused gated MLP halves ----------------------------------------------------------------


@pytest.mark.parametrize("order", ["gate_first", "value_first"])
def test_fused_gated_halves_against_hand_computation(order):
    base = archzoo.load_config("chatglm2-tiny")
    kind, block = ("swiglu", SwiGLU) if order == "gate_first" else ("geglu", GeGLU)
    cfg = base.replace(mlp=replace(base.mlp, kind=kind, hidden=24, bias=True, gated_half_order=order))
    d, f = cfg.model.d_model, 24
    torch.manual_seed(2)
    fused_w, fused_b = torch.randn(2 * f, d) * 0.1, torch.randn(2 * f) * 0.1
    down = torch.randn(d, f) * 0.1
    x = torch.randn(3, d)
    h = x @ fused_w.T + fused_b
    first, second = h[:, :f], h[:, f:]
    if order == "gate_first":  # ChatGLM2 / GLM-4: SiLU(first half) * second half
        expected = (first * torch.sigmoid(first) * second) @ down.T
    else:  # GLM-130B GeGLU: first half * GeLU(second half), erf GeLU
        expected = (first * 0.5 * second * (1 + torch.erf(second / math.sqrt(2)))) @ down.T

    mlp = block(d, f, bias=True)
    with torch.no_grad():
        (mlp.gate_proj.weight, mlp.up_proj.weight) = map(torch.nn.Parameter, split_gated(fused_w, cfg))
        (mlp.gate_proj.bias, mlp.up_proj.bias) = map(torch.nn.Parameter, split_gated(fused_b, cfg))
        mlp.down_proj.weight.copy_(down)
        mlp.down_proj.bias.zero_()
        # the same products in another order (a fused vs two split matmuls): sums of d, then of f terms, each side
        assert torch.allclose(mlp(x), expected, rtol=0, atol=tol.fp32_forward(sum(fused_w.shape), expected))
    assert torch.equal(fuse_gated(split_gated(fused_w, cfg), cfg), fused_w)
    with pytest.raises(ValueError, match="2 x mlp hidden"):
        split_gated(fused_w[:-1], cfg)


def test_silu_reference_is_silu():
    x = torch.randn(5)
    # x / (1 + e^-x) vs x sigma(x): an exp (1 ulp), a sum and a quotient or product each side
    assert torch.allclose(x * torch.sigmoid(x), F.silu(x), rtol=tol.fp32_rounding(6), atol=0)
