"""DeepSeek-V2/V3 and Qwen2/Qwen3-MoE against ``transformers``: same random weights, same logits.

Each transformers model is built from a small config, its norm gains and
biases are moved away from 1 and 0 and DeepSeek-V3's router correction bias is
set to random values (so that it changes which experts are chosen), then it
is saved with ``save_pretrained`` (one key per expert) and loaded with
``archzoo.load_pretrained`` (experts stacked). Logits must agree within 1e-5
(float32) at every non-padded position of a left-padded batch, for MLA in both
the naive and the absorbed mode; then archzoo saves the model back and
transformers must reproduce its own logits from that folder.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from safetensors import safe_open

import archzoo
from archzoo.blocks.mla import set_mla_mode
from archzoo.models.hf.deepseek import rules as deepseek_rules
from archzoo.models.hf.rules import hf_to_ours

TOLERANCE = 1e-5

_DEEPSEEK_SIZES = dict(
    vocab_size=96, hidden_size=64, intermediate_size=96, moe_intermediate_size=24, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
    v_head_dim=12, n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, max_position_embeddings=256,
)  # fmt: skip
_YARN = {
    "rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 64,
    "beta_fast": 32.0, "beta_slow": 1.0, "mscale": 0.707, "mscale_all_dim": 0.707,
}  # fmt: skip
_QWEN_SIZES = dict(
    vocab_size=96, hidden_size=64, intermediate_size=80, moe_intermediate_size=24, num_hidden_layers=3,
    num_attention_heads=4, num_key_value_heads=2, num_experts=8, num_experts_per_tok=2, rope_theta=1e6,
)  # fmt: skip

CASES = {
    "deepseek-v3-q-lora-groups-yarn": (
        "DeepseekV3ForCausalLM",
        transformers.DeepseekV3Config(
            **_DEEPSEEK_SIZES,
            q_lora_rank=32,
            n_group=4,
            topk_group=2,
            n_shared_experts=1,
            routed_scaling_factor=2.5,
            norm_topk_prob=True,
            rope_parameters=_YARN | {"mscale": 1.0, "mscale_all_dim": 1.0},
        ),
    ),
    "deepseek-v3-no-q-lora-half-rope-unnormalised": (
        "DeepseekV3ForCausalLM",
        transformers.DeepseekV3Config(
            **_DEEPSEEK_SIZES,
            q_lora_rank=None,
            n_group=1,
            topk_group=1,
            n_shared_experts=2,
            routed_scaling_factor=1.5,
            norm_topk_prob=False,
            rope_interleave=False,
        ),
    ),
    "deepseek-v2-lite-greedy": (
        "DeepseekV2ForCausalLM",
        transformers.DeepseekV2Config(
            **_DEEPSEEK_SIZES,
            q_lora_rank=None,
            topk_method="greedy",
            n_shared_experts=2,
            routed_scaling_factor=1.0,
        ),
    ),
    "deepseek-v2-group-limited-yarn": (
        "DeepseekV2ForCausalLM",
        transformers.DeepseekV2Config(
            **_DEEPSEEK_SIZES,
            q_lora_rank=32,
            topk_method="group_limited_greedy",
            n_group=4,
            topk_group=2,
            n_shared_experts=1,
            routed_scaling_factor=16.0,
            rope_parameters=_YARN,
        ),
    ),
    "qwen2-moe-shared-gate-dense-layer": (
        "Qwen2MoeForCausalLM",
        transformers.Qwen2MoeConfig(
            **_QWEN_SIZES,
            shared_expert_intermediate_size=40,
            norm_topk_prob=False,
            mlp_only_layers=[1],
        ),
    ),
    "qwen3-moe-sparse-step-head-dim": (
        "Qwen3MoeForCausalLM",
        transformers.Qwen3MoeConfig(**_QWEN_SIZES, head_dim=24, norm_topk_prob=True, decoder_sparse_step=2),
    ),
}


def _logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out


def _set_correction_biases(model: torch.nn.Module, seed: int = 0) -> int:
    """Random V3 correction biases (buffers, so the norm/bias perturbation misses them)."""
    generator = torch.Generator().manual_seed(seed)
    found = 0
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("e_score_correction_bias"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.05)
                found += 1
    return found


def _transformers_model(case: str):
    architecture, hf_config = CASES[case]
    torch.manual_seed(0)
    hf_model = getattr(transformers, architecture)(hf_config).eval()
    if architecture == "DeepseekV3ForCausalLM":
        assert _set_correction_biases(hf_model) == hf_config.num_hidden_layers - hf_config.first_k_dense_replace
    return architecture, hf_config, hf_model


def _modes(case: str) -> list[str | None]:
    return ["naive", "absorbed"] if case.startswith("deepseek") else [None]


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case, hf_folder, padded_batch, tmp_path):
    architecture, hf_config, hf_model = _transformers_model(case)
    folder = hf_folder(hf_model)
    model = archzoo.load_pretrained(folder).eval()
    moe_layer = next(plan.index for plan in model.config.layer_plan if plan.mlp == "moe")
    with safe_open(str(folder / "model.safetensors"), "pt") as f:  # one key per expert ...
        assert f"model.layers.{moe_layer}.mlp.experts.7.gate_proj.weight" in set(f.keys())
    assert model.layers[moe_layer].mlp.experts.gate_up_proj.shape[0] == 8  # ... stacked in archzoo
    ids, mask = padded_batch(hf_config.vocab_size)
    expected = _logits(hf_model, ids, mask)
    real = mask.bool()
    for mode in _modes(case):
        if mode is not None:
            set_mla_mode(model, mode)
        got = _logits(model, ids, mask)
        assert (got - expected)[real].abs().max() < TOLERANCE, mode
        assert not torch.isnan(got).any()

    # and back: transformers loads what archzoo writes, correction bias included
    out = archzoo.save_pretrained(model, tmp_path / "ours")
    reloaded = getattr(transformers, architecture).from_pretrained(out).eval()
    assert (_logits(reloaded, ids, mask) - expected)[real].abs().max() < TOLERANCE


@pytest.mark.parametrize("case", ["deepseek-v3-q-lora-groups-yarn", "qwen2-moe-shared-gate-dense-layer"])
def test_cached_decoding_matches_transformers(case, hf_folder):
    """Prefill then one token at a time with archzoo's cache equals transformers' full forward."""
    _, hf_config, hf_model = _transformers_model(case)
    model = archzoo.load_pretrained(hf_folder(hf_model)).eval()
    ids = torch.randint(0, hf_config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(1))
    expected = _logits(hf_model, ids, None)
    for mode in _modes(case):
        if mode is not None:
            set_mla_mode(model, mode)
        cache = model.new_cache(16)
        with torch.no_grad():
            steps = [model(ids[:, :6], cache=cache)] + [model(ids[:, t : t + 1], cache=cache) for t in range(6, 10)]
        assert (torch.cat(steps, dim=1) - expected).abs().max() < TOLERANCE, mode


def test_released_v3_mtp_layer_is_dropped_on_load():
    """The released V3 checkpoint stores its MTP module as model.layers.{n_layers}; transformers ignores it."""
    cfg = archzoo.load_config("deepseek-tiny")  # 3 layers, mtp_layers = 1
    extra = {
        "model.layers.3.eh_proj.weight": torch.zeros(64, 128),
        "model.layers.3.mlp.experts.0.gate_proj.weight": torch.zeros(32, 64),
        "model.layers.3.shared_head.head.weight": torch.zeros(512, 64),
    }
    assert hf_to_ours(extra, deepseek_rules(cfg), cfg) == {}


def test_tiny_configs_round_trip_through_transformers(tmp_path):
    """archzoo's own tiny MoE configs save as checkpoints transformers runs with the same logits."""
    ids = torch.randint(0, 512, (2, 9), generator=torch.Generator().manual_seed(2))
    for name, architecture in [
        ("deepseek-tiny", "DeepseekV3ForCausalLM"),
        ("deepseek-v2-tiny", "DeepseekV2ForCausalLM"),
        ("qwen2-moe-tiny", "Qwen2MoeForCausalLM"),
        ("qwen3-moe-tiny", "Qwen3MoeForCausalLM"),
    ]:
        torch.manual_seed(0)
        model = archzoo.build_model(name).eval()
        for buffer_name, buffer in model.named_buffers():
            if buffer_name.endswith("e_score_correction_bias"):
                buffer.normal_(0, 0.05)
        folder = archzoo.save_pretrained(model, tmp_path / name)
        hf_model = getattr(transformers, architecture).from_pretrained(folder).eval()
        assert (_logits(hf_model, ids, None) - _logits(model, ids, None)).abs().max() < TOLERANCE, name
        back = archzoo.load_pretrained(folder)
        assert back.config.moe == model.config.moe and back.config.attention == model.config.attention, name
