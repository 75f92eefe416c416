"""The packed-kernel quantized linear (fast/quant.py) equals the dequantize path, and falls back to it
exactly when a kernel is missing, broken or does not take the shape."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import archzoo
from archzoo.blocks.quant import QuantLinear
from archzoo.fast import quant as fast_quant
from archzoo.fast.quant import FastQuantLinear, kernel_path, kernel_works


def _layers(mode: str, dtype: torch.dtype, in_features: int = 256, out_features: int = 64, group_size: int = 64):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features, bias=True).to(dtype)
    return QuantLinear.from_linear(linear, mode, group_size), FastQuantLinear.from_linear(linear, mode, group_size)


def test_the_kernels_of_this_torch_are_found():
    # torch 2.13 (the tested version) ships both; where a build lacks one, the fallback test below covers it
    if hasattr(torch, "_weight_int8pack_mm"):
        assert kernel_works("int8", torch.float32)
    if hasattr(torch, "_weight_int4pack_mm_for_cpu"):
        assert kernel_works("int4", torch.float32)


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_kernel_equals_dequantize_path(mode, dtype):
    reference, fast = _layers(mode, dtype)
    x = torch.randn(5, 256).to(dtype)
    want = reference(x).float()
    got = fast(x).float()
    if not kernel_works(mode, dtype):
        assert torch.equal(got, want)  # no kernel here: the reference forward itself
        return
    assert kernel_path(fast, dtype) == ("int8pack_mm" if mode == "int8" else "int4pack_mm")
    # float32: 256-term dot products, |x w| <= ~4 x 0.06: the kernels sum in another order
    # (and int4 folds the minimum as z = m + 8 s), ~256 eps |sum| ~ 1e-5; bf16 outputs are
    # rounded to 8 significant bits by either path: 2^-7 of the largest output
    scale = want.abs().max().item()
    tolerance = 1e-5 * max(scale, 1.0) if dtype == torch.float32 else 2.0**-7 * scale
    assert torch.allclose(got, want, atol=tolerance, rtol=0)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_missing_kernel_changes_nothing(mode, monkeypatch):
    reference, fast = _layers(mode, torch.float32)
    x = torch.randn(3, 256)

    def gone(*args):
        raise AttributeError("module 'torch' has no attribute '_weight_int8pack_mm'")

    monkeypatch.setattr(fast_quant, "_int8_mm" if mode == "int8" else "_int4_mm", gone)
    kernel_works.cache_clear()
    try:
        assert kernel_path(fast, torch.float32) == "dequantize"
        assert torch.equal(fast(x), reference(x))
    finally:
        kernel_works.cache_clear()


def test_shapes_the_int4_kernel_cannot_take_run_the_reference():
    reference, fast = _layers("int4", torch.float32, in_features=96, group_size=64)  # 96 % 64 != 0
    x = torch.randn(2, 96)
    assert kernel_path(fast, torch.float32) == "dequantize"
    assert torch.equal(fast(x), reference(x))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_fast_and_reference_models_agree(mode):
    model = archzoo.build_model("llama-tiny").eval()
    reference = archzoo.quantize(copy.deepcopy(model), mode, group_size=32, implementation="reference")
    fast = archzoo.quantize(copy.deepcopy(model), mode, group_size=32, implementation="fast")
    assert reference.state_dict().keys() == fast.state_dict().keys()
    ids = torch.randint(0, model.config.model.vocab_size, (1, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = reference(ids), fast(ids)
    # per layer a float32 reordering of ~d_model-term sums (~1e-6 relative), through 2 layers
    # and the head: 1e-4 of the logits' scale is ~50x that
    assert torch.allclose(got, want, atol=1e-4 * want.abs().max().item(), rtol=0)


def test_use_implementation_switches_quantized_layers_both_ways():
    from archzoo.fast import use_implementation

    model = archzoo.quantize(archzoo.build_model("llama-tiny"), "int8")
    assert type(model.layers[0].attn.q_proj) is FastQuantLinear  # the model's own implementation: fast
    use_implementation(model, "reference")
    assert type(model.layers[0].attn.q_proj) is QuantLinear
    use_implementation(model, "fast")
    assert type(model.layers[0].attn.q_proj) is FastQuantLinear
