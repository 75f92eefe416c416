"""LoRA as a block and as a model edit: the equation, merge / unmerge, freezing, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import archzoo
import tolerances as tol
from archzoo.blocks.lora import LoRALinear
from archzoo.errors import InputError
from archzoo.models.hf.family import UnsupportedConfig


def _random_adapters(model: nn.Module, seed: int = 0) -> None:
    """B starts at zero (the update is then invisible); give every adapter a non-zero B."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


def test_lora_linear_is_the_equation():
    torch.manual_seed(0)
    base = nn.Linear(12, 10)
    weight, bias = base.weight.detach().clone(), base.bias.detach().clone()
    layer = LoRALinear(base, rank=3, alpha=6.0)
    x = torch.randn(4, 12)
    assert torch.equal(layer(x), base(x))  # B = 0: the adapted layer starts as the base layer, bit for bit
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    a, b = layer.lora_A.weight, layer.lora_B.weight
    expected = x @ weight.T + bias + (6.0 / 3) * (x @ a.T @ b.T)
    # float32, the same products summed in other orders: the base's 12-term sums (and the bias), the 12- then
    # 3-term adapter path, and the sum of the two
    atol = tol.chain(tol.fp32_matmul(x, weight) + tol.fp32_rounding(1, bias.abs().max().item()),
                     2.0 * (tol.fp32_matmul(x, a) * b.abs().sum(-1).max().item() + tol.fp32_matmul(x @ a.T, b)),
                     tol.fp32_rounding(1, expected.abs().max().item()))  # fmt: skip
    assert torch.allclose(layer(x), expected, atol=atol, rtol=0)


def test_a_starts_kaiming_uniform_as_peft():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(400, 300), rank=64, alpha=16)
    bound = 1 / math.sqrt(400)  # kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(in), 1/sqrt(in))
    a = layer.lora_A.weight
    assert a.abs().max() <= bound and a.abs().max() > 0.95 * bound
    assert not layer.lora_B.weight.any()


def test_rslora_scales_by_sqrt_rank():
    layer = LoRALinear(nn.Linear(8, 8), rank=4, alpha=8, rslora=True)
    assert layer.scaling == 8 / 2


def test_merge_then_unmerge_restores_the_weights():
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    archzoo.add_lora(model, rank=4, alpha=8, targets=("q_proj", "v_proj", "down_proj"))
    _random_adapters(model)
    ids = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        adapted = model(ids)
        archzoo.merge_lora(model)
        layer = model.layers[0].attn.q_proj
        expected_w = before["layers.0.attn.q_proj.weight"] + 2.0 * layer.lora_B.weight @ layer.lora_A.weight
        # one float32 rounding of W + dW per element (|W| ~ 0.02, |dW| < 0.1): < 1e-8
        assert (layer.weight - expected_w).abs().max() < 1e-7
        merged = model(ids)
        archzoo.unmerge_lora(model)
    # after merge the model equals base + adapter: logits of the merged weights vs W x + s B A x
    # (different summation order over d_model = 128 and 352 terms; logits ~ 1): ~1e-6
    assert (merged - adapted).abs().max() < 1e-5
    after = model.state_dict()
    for key, value in before.items():
        # add then subtract the same float32 dW: at most two roundings of |W + dW| < 1 (2 * 6e-8)
        assert (after[key] - value).abs().max() < 1e-6, key


def test_only_adapters_get_gradients():
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    archzoo.add_lora(model, rank=2, targets=["q_proj", "v_proj"])
    _random_adapters(model)
    logits = model(torch.randint(0, 512, (2, 8)))
    logits.square().mean().backward()
    with_grad = sorted(name for name, p in model.named_parameters() if p.grad is not None)
    assert with_grad == sorted(
        f"layers.{i}.attn.{p}.lora_{s}.weight" for i in range(2) for p in ("q_proj", "v_proj") for s in "AB"
    )
    assert all(p.grad.abs().sum() > 0 for name, p in model.named_parameters() if p.grad is not None)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == [name for name, _ in model.named_parameters() if ".lora_" in name]


def test_bad_targets_say_which_names_exist():
    model = archzoo.build_model("llama-tiny")
    with pytest.raises(InputError, match=r"'qkv' matches no linear layer.*gate_proj, k_proj, lm_head, o_proj, q_proj"):
        archzoo.add_lora(model, targets=("qkv",))
    with pytest.raises(InputError, match="rank"):
        archzoo.add_lora(model, rank=0)
    archzoo.add_lora(model, targets=("q_proj",))
    with pytest.raises(InputError, match="already has a LoRA adapter"):
        archzoo.add_lora(model, targets=("q_proj",))


def test_refusals_for_stacked_experts_absorbed_mla_and_tied_heads():
    deepseek = archzoo.build_model("deepseek-v2-tiny", device="meta")
    with pytest.raises(UnsupportedConfig, match="stacked routed-expert weights"):
        archzoo.add_lora(deepseek, targets=("experts.gate_up_proj",))
    with pytest.raises(UnsupportedConfig, match="absorbed MLA does not call kv_b_proj"):
        archzoo.add_lora(deepseek, targets=("kv_b_proj",))
    qwen = archzoo.build_model("qwen2-tiny", device="meta")
    assert qwen.config.model.tie_embeddings
    with pytest.raises(UnsupportedConfig, match="tied to the embedding"):
        archzoo.add_lora(qwen, targets=("lm_head",))


def test_mla_and_moe_projections_take_adapters():
    model = archzoo.build_model("deepseek-v2-tiny")
    with pytest.warns(UserWarning, match="routed experts"):
        archzoo.add_lora(model, rank=2, targets=("q_proj", "kv_a_proj", "o_proj", "down_proj"))
    adapted = {n for n, m in model.named_modules() if isinstance(m, LoRALinear)}
    assert "layers.0.attn.kv_a_proj" in adapted
    assert any(n.endswith("shared_experts.down_proj") for n in adapted)
    _random_adapters(model)
    ids = torch.randint(0, model.config.model.vocab_size, (1, 6))
    with torch.no_grad():
        before = model(ids)
        archzoo.merge_lora(model)
        # merged vs unmerged adapters; logits ~ 1, float32 sums of <= a few hundred terms
        assert (model(ids) - before).abs().max() < 1e-5


def test_save_pretrained_refuses_unmerged_adapters_and_saves_merged_weights(tmp_path):
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    archzoo.add_lora(model, rank=2)
    _random_adapters(model)
    with pytest.raises(InputError, match="unmerged LoRA adapters.*save_adapter"):
        archzoo.save_pretrained(model, tmp_path / "unmerged")
    assert not (tmp_path / "unmerged").exists()
    ids = torch.randint(0, 512, (1, 7))
    with torch.no_grad():
        adapted = model(ids)
        archzoo.merge_lora(model)
        back = archzoo.load_pretrained(archzoo.save_pretrained(model, tmp_path / "merged"))
        # the merged checkpoint is the adapted model: W + s B A summed into one weight instead of x W + s (x A) B,
        # the same products in other orders, sums of at most 128 terms (llama-tiny's widths)
        assert torch.allclose(back(ids), adapted, atol=tol.fp32_forward(128, adapted), rtol=0)


def test_chatglm2_fused_blocks_export_q_and_v_rows(tmp_path):
    """ChatGLM2's query_key_value is [Q | K | V] in contiguous blocks: q's B rows first, k's zero, v's last."""
    from safetensors import safe_open

    model = archzoo.build_model("chatglm2-tiny")
    model.hf_architecture = "ChatGLMModel"
    archzoo.add_lora(model, rank=2, alpha=4, targets=("q_proj", "v_proj"))
    _random_adapters(model)
    archzoo.save_adapter(model, tmp_path / "a")
    with safe_open(str(tmp_path / "a" / "adapter_model.safetensors"), framework="pt") as f:
        b = f.get_tensor("base_model.model.transformer.encoder.layers.0.self_attention.query_key_value.lora_B.weight")
    attn = model.layers[0].attn
    q, kv = attn.q_proj.out_features, attn.k_proj.out_features
    assert b.shape == (q + 2 * kv, 4)
    assert torch.equal(b[:q, :2], attn.q_proj.lora_B.weight) and not b[:q, 2:].any()
    assert not b[q : q + kv].any()
    assert torch.equal(b[q + kv :, 2:], attn.v_proj.lora_B.weight) and not b[q + kv :, :2].any()


def test_qwen_v1_c_attn_exports_q_and_v_blocks_and_loads_back(tmp_path):
    """Qwen v1's c_attn is [Q | K | V] in row blocks (weight and bias); its k rows stay zero."""
    from safetensors import safe_open

    spec = archzoo.load_config("qwen-7b").to_dict()
    spec["model"].update(d_model=64, n_layers=2, vocab_size=96, max_seq_len=64)
    spec["attention"].update(n_heads=4)
    spec["mlp"].update(hidden=88)
    torch.manual_seed(0)
    model = archzoo.build_model(archzoo.Config.from_dict(spec, "qwen-v1-tiny"))
    model.hf_architecture = "QWenLMHeadModel"
    archzoo.add_lora(model, rank=2, alpha=4, targets=("q_proj", "v_proj"))
    _random_adapters(model)
    archzoo.save_adapter(model, tmp_path / "a")
    with safe_open(str(tmp_path / "a" / "adapter_model.safetensors"), framework="pt") as f:
        b = f.get_tensor("base_model.model.transformer.h.1.attn.c_attn.lora_B.weight")
    assert b.shape == (3 * 64, 4) and not b[64:128].any()
    back = archzoo.build_model(archzoo.Config.from_dict(spec, "qwen-v1-tiny"))
    back.load_state_dict({k: v for k, v in model.state_dict().items() if ".lora_" not in k}, strict=False)
    back.hf_architecture = "QWenLMHeadModel"
    archzoo.load_adapter(back, tmp_path / "a")
    ids = torch.randint(0, 96, (1, 7))
    with torch.no_grad():
        assert torch.equal(back(ids), model(ids))
