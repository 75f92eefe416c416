"""Greedy generation equals ``transformers`` ``generate(do_sample=False)`` token for token.

For every family transformers implements: a transformers model from a small
config with random weights is saved, loaded with ``archzoo.load_pretrained``,
and both decode 32 new tokens from the same prompts: one prompt alone, and a
left-padded batch whose rows have different lengths. Weights are drawn wider
than the default init so that the top two logits are far apart compared with
float32 rounding (a near-tie could otherwise flip a token). Then both decode
again with an eos token that one row emits early: finished rows must be padded
with it the same way and decoding must stop at the same step.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import archzoo
from archzoo.models.hf import ARCHITECTURES

NEW_TOKENS = 32
VOCAB = 96
SMALL = {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
ROPE = {"rope_type": "default", "rope_theta": 10000.0}

CASES = {
    "llama": ("LlamaForCausalLM", transformers.LlamaConfig(**SMALL, intermediate_size=88, num_key_value_heads=2)),
    "bloom": ("BloomForCausalLM", transformers.BloomConfig(vocab_size=VOCAB, hidden_size=48, n_layer=2, n_head=6)),
    "qwen2": (
        "Qwen2ForCausalLM",
        transformers.Qwen2Config(**SMALL, intermediate_size=88, num_key_value_heads=2, tie_word_embeddings=True),
    ),
    "qwen3": (
        "Qwen3ForCausalLM",
        transformers.Qwen3Config(**SMALL, intermediate_size=88, num_key_value_heads=2, head_dim=24),
    ),
    "glm": (
        "GlmForCausalLM",
        transformers.GlmConfig(
            **SMALL, intermediate_size=88, num_key_value_heads=2, head_dim=16,
            pad_token_id=0, bos_token_id=1, eos_token_id=2,  # the defaults lie outside the small vocabulary
        ),
    ),
    "deepseek_v2": (
        "DeepseekV2ForCausalLM",
        transformers.DeepseekV2Config(
            **SMALL, intermediate_size=88, moe_intermediate_size=32, num_key_value_heads=4,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
            n_group=4, topk_group=2, topk_method="group_limited_greedy", routed_scaling_factor=1.0,
            kv_lora_rank=32, q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
            rope_parameters=ROPE,
        ),
    ),
    "deepseek_v3": (
        "DeepseekV3ForCausalLM",
        transformers.DeepseekV3Config(
            **SMALL, intermediate_size=88, moe_intermediate_size=32, num_key_value_heads=4,
            n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=1, first_k_dense_replace=1,
            n_group=4, topk_group=2, routed_scaling_factor=2.5, norm_topk_prob=True,
            kv_lora_rank=32, q_lora_rank=48, qk_nope_head_dim=16, qk_rope_head_dim=8, v_head_dim=16,
            rope_parameters=ROPE,
        ),
    ),
    "qwen2_moe": (
        "Qwen2MoeForCausalLM",
        transformers.Qwen2MoeConfig(
            **SMALL, intermediate_size=88, num_key_value_heads=2, moe_intermediate_size=32,
            shared_expert_intermediate_size=48, num_experts=8, num_experts_per_tok=2, mlp_only_layers=[1],
        ),
    ),
    "qwen3_moe": (
        "Qwen3MoeForCausalLM",
        transformers.Qwen3MoeConfig(
            **SMALL, intermediate_size=88, num_key_value_heads=2, moe_intermediate_size=32,
            num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
        ),
    ),
}  # fmt: skip

SUPPORTED = sorted(case for case, (architecture, _) in CASES.items() if architecture in ARCHITECTURES)


def widen_weights(model: torch.nn.Module, seed: int) -> None:
    """Matrices ~ N(0, 0.1^2) instead of the 0.02 init, 1-D parameters moved off 1 / 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            noise = torch.randn(param.shape, generator=generator)
            if param.dim() == 1:
                param.add_(noise * 0.1)
            else:
                param.copy_(noise * 0.1)


def prompts(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three rows of lengths 9, 6 and 3, left-padded with id 0."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (3, 9), generator=generator)
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, :3] = 0
    mask[2, :6] = 0
    return ids.masked_fill(mask == 0, 0), mask


def hf_greedy(model, ids, mask, eos_id: int | None) -> torch.Tensor:
    """transformers' greedy continuation, prompt removed; finished rows padded with eos_id."""
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=NEW_TOKENS,
        eos_token_id=eos_id,
        pad_token_id=eos_id if eos_id is not None else 0,
    )
    return out[:, ids.shape[1] :]


@pytest.fixture(params=SUPPORTED)
def pair(request, tmp_path):
    architecture, hf_config = CASES[request.param]
    torch.manual_seed(0)
    hf_model = getattr(transformers, architecture)(hf_config)
    widen_weights(hf_model, seed=1)
    hf_model.eval()
    hf_model.generation_config.eos_token_id = None  # decode all 32 tokens unless an eos is asked for
    hf_model.generation_config.bos_token_id = None
    hf_model.save_pretrained(tmp_path / "hf")
    return hf_model, archzoo.load_pretrained(tmp_path / "hf")


def test_greedy_generation_matches_transformers(pair):
    hf_model, model = pair
    ids, mask = prompts()
    expected = hf_greedy(hf_model, ids, mask, None)
    assert expected.shape == (3, NEW_TOKENS)
    assert archzoo.generate(model, ids, NEW_TOKENS, attention_mask=mask).tolist() == expected.tolist()
    alone = hf_greedy(hf_model, ids[:1], mask[:1], None)
    assert archzoo.generate(model, ids[:1], NEW_TOKENS).tolist() == alone.tolist()


def test_eos_handling_matches_transformers(pair):
    hf_model, model = pair
    ids, mask = prompts(seed=1)
    free = archzoo.generate(model, ids, NEW_TOKENS, attention_mask=mask)
    eos = int(free[1, 4])  # row 1 finishes at step 4 (or earlier if it emitted this token before)
    expected = hf_greedy(hf_model, ids, mask, eos)
    got = archzoo.generate(model, ids, NEW_TOKENS, attention_mask=mask, eos_id=eos)
    assert got.tolist() == expected.tolist()


def test_every_family_transformers_implements_is_supported():
    missing = sorted(architecture for architecture, _ in CASES.values() if architecture not in ARCHITECTURES)
    assert not missing, f"load_pretrained does not support yet: {missing}"
