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
from archzoo.fast.quant import FastQuantLinear, kernel_fits, kernel_is_faster, kernel_path, kernel_works


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
    if not kernel_works(mode, dtype):
        assert torch.equal(fast(x).float(), want)  # no kernel here: the reference forward itself
        return
    assert kernel_fits(fast, dtype)
    got = fast.kernel_forward(x).float()  # the kernel, whether or not the timing probe chose it
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


@pytest.mark.parametrize("mode", ["int8", "int4"])
@pytest.mark.parametrize("faster", [True, False])
def test_the_kernel_runs_only_where_the_timing_probe_found_it_faster(mode, faster, monkeypatch):
    reference, fast = _layers(mode, torch.float32)
    assert kernel_fits(fast, torch.float32)  # torch 2.13 ships both kernels (test above)
    monkeypatch.setattr(fast_quant, "kernel_is_faster", lambda m, d: faster)
    x = torch.randn(3, 256)
    if faster:
        assert kernel_path(fast, torch.float32) == ("int8pack_mm" if mode == "int8" else "int4pack_mm")
        assert torch.equal(fast(x), fast.kernel_forward(x))
    else:
        assert kernel_path(fast, torch.float32) == "dequantize"
        assert torch.equal(fast(x), reference(x))  # the dequantize path itself, bit for bit


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_more_rows_than_the_kernels_take_go_dequantized(mode, monkeypatch):
    reference, fast = _layers(mode, torch.float32)
    monkeypatch.setattr(fast_quant, "kernel_is_faster", lambda m, d: True)
    few, many = torch.randn(fast_quant.KERNEL_ROWS, 256), torch.randn(2, fast_quant.KERNEL_ROWS, 256)
    assert torch.equal(fast(few), fast.kernel_forward(few))  # up to KERNEL_ROWS rows: the kernel
    assert torch.equal(fast(many), reference(many))  # a prefill of 2 x 16 rows: dequantize, bit for bit


def test_the_timing_probe_answers_once_per_mode_and_dtype():
    kernel_is_faster.cache_clear()
    first = kernel_is_faster("int8", torch.bfloat16)
    assert isinstance(first, bool) and kernel_is_faster("int8", torch.bfloat16) is first
    assert kernel_is_faster.cache_info().hits == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_symmetric_per_row_int4_runs_on_the_kernel_with_repeated_scales(dtype):
    # ChatGLM-6B's int4 form: one symmetric group per 256-wide row; the kernel is handed groups
    # of 256 (its largest), the same (s, z = 0) for each
    torch.manual_seed(0)
    linear = nn.Linear(512, 64, bias=True).to(dtype)
    reference = QuantLinear.from_linear(linear, "int4", None, symmetric=True)
    fast = FastQuantLinear.from_linear(linear, "int4", None, symmetric=True)
    assert fast.group_size == 512 and fast_quant.int4_kernel_group(fast) == 256
    assert kernel_fits(fast, dtype)
    x = torch.randn(4, 512).to(dtype)
    want, got = reference(x).float(), fast.kernel_forward(x).float()
    # as in test_packed_kernel_equals_dequantize_path, for 512-term sums
    scale = want.abs().max().item()
    tolerance = 2e-5 * max(scale, 1.0) if dtype == torch.float32 else 2.0**-7 * scale
    assert torch.allclose(got, want, atol=tolerance, rtol=0)


def _offset_copy(t: torch.Tensor, offset_bytes: int = 40) -> torch.Tensor:
    """``t``'s values in storage starting ``offset_bytes`` past an aligned address (as safetensors hands out)."""
    flat = torch.empty(t.numel() * t.element_size() + offset_bytes, dtype=torch.uint8)
    view = flat[offset_bytes:].view(t.dtype).view(t.shape)
    view.copy_(t)
    return view


def test_unaligned_int8_codes_take_the_dequantize_path_until_aligned():
    # torch 2.13's int8 kernel dies (SIGSEGV) on codes 40 bytes past a 64-byte boundary with > 2 rows
    reference, fast = _layers("int8", torch.bfloat16)
    fast.qweight = _offset_copy(fast.qweight)
    assert not fast_quant.aligned(fast.qweight) and not kernel_fits(fast, torch.bfloat16)
    x = torch.randn(16, 256).to(torch.bfloat16)
    assert torch.equal(fast(x), reference(x))  # no crash, the reference itself
    fast_quant.align_codes(fast)
    assert fast_quant.aligned(fast.qweight) and torch.equal(fast.qweight, reference.qweight)
    assert kernel_fits(fast, torch.bfloat16)


def test_unaligned_activations_are_copied_before_the_kernel():
    _, fast = _layers("int8", torch.bfloat16)
    x = torch.randn(16, 256).to(torch.bfloat16)
    shifted = _offset_copy(x)
    assert not fast_quant.aligned(shifted)
    assert torch.equal(fast.kernel_forward(shifted), fast.kernel_forward(x))


def test_a_loaded_bf16_int8_folder_prefills_on_the_kernel(tmp_path):
    model = archzoo.quantize(archzoo.build_model("llama-tiny", dtype=torch.bfloat16).eval(), "int8")
    loaded = archzoo.load_pretrained(archzoo.save_pretrained(model, tmp_path / "q")).eval()
    layers = [m for m in loaded.modules() if isinstance(m, QuantLinear)]
    assert layers and all(fast_quant.aligned(m.qweight) for m in layers)
    ids = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))  # the same codes, the same kernels (16 rows: the aligned loads)
