"""archzoo.quantize on every family: what is converted, what stays float, tied heads, errors,
and logits equal to a float model holding the dequantized weights."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

import archzoo
import tolerances as tol
from archzoo.blocks.experts import StackedExperts
from archzoo.blocks.quant import QuantEmbedding, QuantizedWeight, QuantLinear
from archzoo.errors import InputError

TINY = sorted(p.stem for p in Path(__file__).resolve().parents[2].joinpath("configs").glob("*/*-tiny.toml"))


def _float_twin(quantized: nn.Module, original: nn.Module) -> nn.Module:
    """``original`` with every quantized weight replaced by W' (plain float modules, float forward)."""
    twin = copy.deepcopy(original)
    with torch.no_grad():
        for name, module in quantized.named_modules(remove_duplicate=False):
            try:
                target = twin.get_submodule(name) if name else twin
            except AttributeError:  # parts of a quantized module (experts' weights, a shared table)
                continue
            if isinstance(module, QuantLinear):
                target.weight = nn.Parameter(module.dequantize())  # own copy: unties a tied head, as quantize does
            elif isinstance(module, QuantEmbedding):
                target.weight = nn.Parameter(module.table.dequantize())
            elif isinstance(module, StackedExperts) and isinstance(module.gate_up_proj, QuantizedWeight):
                target.gate_up_proj.copy_(module.gate_up_proj.dequantize())
                target.down_proj.copy_(module.down_proj.dequantize())
                target.use_grouped_mm = False  # the quantized experts' loop, so both sum in one order
    return twin


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_every_family_quantizes_and_computes_with_dequantized_weights(name, mode):
    torch.manual_seed(0)
    model = archzoo.build_model(name).eval()
    quantized = archzoo.quantize(copy.deepcopy(model), mode, group_size=32)
    for module_name, module in quantized.named_modules():
        if isinstance(module, nn.Linear):
            assert module_name == "lm_head", f"{module_name} was left float"
        if isinstance(module, StackedExperts):
            assert isinstance(module.gate_up_proj, QuantizedWeight) and isinstance(module.down_proj, QuantizedWeight)
    assert isinstance(quantized.embed, nn.Embedding)  # embeddings stay float unless asked
    floats = [n for n, p in quantized.named_parameters() if p.dim() >= 2]
    assert set(floats) <= {"embed.weight", "lm_head.weight"} | {n for n in floats if n.endswith("router.weight")}
    ids = torch.randint(0, model.config.model.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, want = quantized(ids), _float_twin(quantized, model)(ids)
        original = model(ids)
    # the same W' through the same float32 ops: dense families agree bit for bit; MoE layers add
    # their k expert rows in an order that may differ (index_add): sums in other orders, of at most
    # the model's widest sum (tiny configs: <= 512 terms). The float weights give other logits.
    assert torch.allclose(got, want, atol=tol.fp32_forward(512, want), rtol=0)
    assert not torch.equal(got, original)


@pytest.mark.parametrize("name", ["qwen2-tiny", "llama-tiny"])  # tied and untied heads
def test_everything_quantized_including_head_and_embedding(name):
    model = archzoo.build_model(name).eval()
    tied = model.config.model.tie_embeddings
    quantized = archzoo.quantize(copy.deepcopy(model), "int4", group_size=16, skip=(), embeddings=True)
    assert isinstance(quantized.lm_head, QuantLinear) and isinstance(quantized.embed, QuantEmbedding)
    assert (quantized.embed.table is quantized.lm_head) == tied  # a tied table is stored once
    ids = torch.tensor([[1, 5, 7, 2]])
    with torch.no_grad():
        assert torch.equal(quantized(ids), _float_twin(quantized, model)(ids))


def test_tied_head_skipped_stays_tied_to_the_float_embedding():
    quantized = archzoo.quantize(archzoo.build_model("qwen2-tiny"), "int8")
    assert quantized.lm_head.weight is quantized.embed.weight


def test_norm_head_is_quantized_as_its_normalised_rows():
    model = archzoo.build_model("baichuan-tiny")
    from archzoo.blocks.norm_head import NormHead

    model.lm_head = NormHead(model.config.model.d_model, model.config.model.vocab_size)
    nn.init.normal_(model.lm_head.weight, 0, 3.0)  # rows far from unit length
    quantized = archzoo.quantize(copy.deepcopy(model).eval(), "int8", skip=())
    h = torch.randn(3, model.config.model.d_model)
    with torch.no_grad():
        want = model.lm_head(h)
        # int8 rounds each weight of row j by <= s_j / 2 = max|w_j| / 254, so logit j moves by <= |h|_1 s_j / 2;
        # the scales, kept in bfloat16, move each weight by <= 2^-8 of itself: <= 2^-8 (|h| @ |W|^T)_j
        w = model.lm_head.weight
        rounding = h.abs().sum(-1).max() * w.abs().amax(-1).max() / 254
        scales = tol.EPS_BF16 / 2 * (h.abs() @ w.abs().T).max()
        assert torch.allclose(quantized.lm_head(h), want, rtol=0, atol=float(rounding + scales) + tol.fp32_matmul(h, w))


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"mode": "int3"}, "mode"),
        ({"mode": "int4", "group_size": 0}, "group_size"),
        ({"mode": "int4", "group_size": 3.5}, "group_size"),
        ({"mode": "int8", "skip": ("lm_haed",)}, "skip"),
        ({"mode": "int8", "skip": (1,)}, "skip"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    with pytest.raises(InputError, match=f"^{argument}:"):
        archzoo.quantize(archzoo.build_model("llama-tiny"), **kwargs)


def test_quantizing_twice_or_with_lora_is_refused():
    model = archzoo.quantize(archzoo.build_model("llama-tiny"), "int8")
    with pytest.raises(InputError, match="already quantized"):
        archzoo.quantize(model, "int4")
    with pytest.raises(InputError, match="merge_lora"):
        archzoo.quantize(archzoo.add_lora(archzoo.build_model("llama-tiny")), "int8")


def test_group_size_larger_than_a_row_is_one_group_and_ragged_groups_work():
    model = archzoo.quantize(archzoo.build_model("llama-tiny"), "int4", group_size=100)
    layer = model.layers[0].attn.q_proj
    d = model.config.model.d_model
    assert layer.group_size == min(100, d) and layer.scales.shape == (layer.out_features, -(-d // layer.group_size))
