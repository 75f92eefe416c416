"""LoRA adapters against ``peft``: the same adapter gives the same logits in both libraries.

archzoo -> peft: archzoo loads a transformers checkpoint, adds LoRA, gives every
B random values (B = 0 would make any mistake invisible), saves the adapter;
``peft.PeftModel.from_pretrained(transformers_model, folder)`` must give the same
logits. peft -> archzoo: ``peft.get_peft_model`` adapts the transformers model,
random B again, ``save_pretrained``; ``archzoo.load_adapter`` must give peft's
logits. Both within 1e-5 in float32, the tolerance of the model parity tests
(``test_dense_parity.py``): logits are sums over d_model = 48..64 products of
O(1) values computed in different orders, ~64 * 1.2e-7 * |logit| apart.
BLOOM fuses q/k/v into one ``query_key_value`` linear layer: archzoo's adapters
on q and v are one PEFT adapter of twice the rank there (see ``adapters/peft_lora.py``).
"""

from __future__ import annotations

import warnings

import peft
import pytest
import torch
import transformers
from safetensors import safe_open

import archzoo
from archzoo.adapters.lora import lora_layers

TOLERANCE = 1e-5

_MOE = dict(
    vocab_size=96, hidden_size=64, intermediate_size=80, moe_intermediate_size=24, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
)  # fmt: skip
_MLA = dict(
    vocab_size=96, hidden_size=64, intermediate_size=96, moe_intermediate_size=24, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=4, kv_lora_rank=16, qk_nope_head_dim=16, qk_rope_head_dim=8,
    v_head_dim=12, n_routed_experts=4, num_experts_per_tok=2, first_k_dense_replace=1, q_lora_rank=24,
    n_group=1, topk_group=1, n_shared_experts=1,
)  # fmt: skip

# case: (transformers class, config, archzoo targets, the same layers as PEFT target_modules)
CASES = {
    "llama-gqa": (
        "LlamaForCausalLM",
        transformers.LlamaConfig(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
        ),
        ("q_proj", "v_proj", "o_proj", "down_proj"),
        ["q_proj", "v_proj", "o_proj", "down_proj"],
    ),
    "qwen2-bias-tied": (
        "Qwen2ForCausalLM",
        transformers.Qwen2Config(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        ),
        ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"),
        ["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"],
    ),
    "qwen2-moe-shared-expert": (
        "Qwen2MoeForCausalLM",
        transformers.Qwen2MoeConfig(**_MOE, shared_expert_intermediate_size=40),
        ("q_proj", "v_proj", "shared_experts.gate_proj", "shared_experts.down_proj"),
        ["q_proj", "v_proj", "shared_expert.gate_proj", "shared_expert.down_proj"],
    ),
    "deepseek-v3-mla": (
        "DeepseekV3ForCausalLM",
        transformers.DeepseekV3Config(**_MLA),
        # MLA's projections only: peft 0.21 on transformers 5 also puts an adapter on the stacked routed
        # experts of any layer whose MLP it targets (its weight conversion maps *down_proj / *up_proj there)
        ("q_a_proj", "q_b_proj", "kv_a_proj", "o_proj"),
        ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "o_proj"],
    ),
    "bloom-fused-qkv": (
        "BloomForCausalLM",
        transformers.BloomConfig(vocab_size=96, hidden_size=48, n_layer=2, n_head=6),
        ("q_proj", "v_proj", "o_proj"),
        ["query_key_value", "dense"],
    ),
}


def _random_b(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def _logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out


def _hf_model(case, hf_folder):
    architecture, config, _, _ = CASES[case]
    torch.manual_seed(0)
    hf_model = getattr(transformers, architecture)(config).eval()
    return hf_model, hf_folder(hf_model)


@pytest.mark.parametrize("case", sorted(CASES))
def test_archzoo_adapter_loads_into_peft(case, hf_folder, padded_batch, tmp_path):
    hf_model, folder = _hf_model(case, hf_folder)
    _, config, targets, _ = CASES[case]
    model = archzoo.load_pretrained(folder)
    archzoo.add_lora(model, rank=4, alpha=8, targets=targets)
    _random_b(model, seed=1)
    archzoo.save_adapter(model, tmp_path / "adapter")
    ids, mask = padded_batch(config.vocab_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' deprecation notes inside peft
        peft_model = peft.PeftModel.from_pretrained(hf_model, tmp_path / "adapter").eval()
    got, expected = _logits(model, ids, mask), _logits(peft_model, ids, mask)
    assert (got - expected)[mask.bool()].abs().max() < TOLERANCE
    # the adapter moved the logits well beyond the tolerance (so the test can fail)
    assert (_logits(archzoo.load_pretrained(folder), ids, mask) - got)[mask.bool()].abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("case", sorted(CASES))
def test_peft_adapter_loads_into_archzoo(case, hf_folder, padded_batch, tmp_path):
    hf_model, folder = _hf_model(case, hf_folder)
    _, config, _, peft_targets = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = peft.get_peft_model(hf_model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=peft_targets))
    _random_b(peft_model, seed=2)
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.eval()
    model = archzoo.load_adapter(archzoo.load_pretrained(folder), tmp_path / "adapter")
    ids, mask = padded_batch(config.vocab_size)
    got, expected = _logits(model, ids, mask), _logits(peft_model, ids, mask)
    assert (got - expected)[mask.bool()].abs().max() < TOLERANCE
    assert (_logits(archzoo.load_pretrained(folder), ids, mask) - got)[mask.bool()].abs().max() > 100 * TOLERANCE


def test_adapter_file_uses_peft_names_and_shapes(hf_folder, tmp_path):
    _, folder = _hf_model("llama-gqa", hf_folder)
    model = archzoo.add_lora(archzoo.load_pretrained(folder), rank=4, alpha=8)
    archzoo.save_adapter(model, tmp_path / "adapter")
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), framework="pt") as f:
        shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    assert shapes["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"] == (4, 64)  # [r, in]
    assert shapes["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"] == (64, 4)  # [out, r]
    assert shapes["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"] == (32, 4)  # 2 kv heads x 16
    assert len(shapes) == 2 * 2 * 2


def test_fused_qkv_round_trip_keeps_q_and_v_only(hf_folder, padded_batch, tmp_path):
    """BLOOM: q and v adapters of rank 4 -> one rank-8 query_key_value adapter whose k rows are 0 -> q and v again."""
    _, folder = _hf_model("bloom-fused-qkv", hf_folder)
    model = archzoo.add_lora(archzoo.load_pretrained(folder), rank=4, alpha=8, targets=("q_proj", "v_proj"))
    _random_b(model, seed=3)
    archzoo.save_adapter(model, tmp_path / "adapter")
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), framework="pt") as f:
        b = f.get_tensor("base_model.model.transformer.h.0.self_attention.query_key_value.lora_B.weight")
    per_head = b.view(6, 3, 8, 8)  # rows per head [q | k | v] (8 each), columns [q's 4 | v's 4]
    assert not per_head[:, 1].any()  # k rows
    assert not per_head[:, 0, :, 4:].any() and not per_head[:, 2, :, :4].any()  # q uses q's columns, v v's
    back = archzoo.load_adapter(archzoo.load_pretrained(folder), tmp_path / "adapter")
    assert sorted(lora_layers(back)) == sorted(lora_layers(model))
    assert all(layer.rank == 4 for layer in lora_layers(back).values())
    ids, mask = padded_batch(96)
    assert torch.equal(_logits(back, ids, mask), _logits(model, ids, mask))
