"""Weight-only quantization as a block: the equations on worked examples, half-step error bounds,
zero rows, outliers, int4 packing, and the quantized linear / embedding / experts forwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tolerances as tol
from archzoo.blocks.experts import StackedExperts
from archzoo.blocks.quant import (
    QuantEmbedding,
    QuantizedWeight,
    QuantLinear,
    pack_int4,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)
from archzoo.blocks.quant_experts import QuantStackedExperts

# float32 has a 24-bit significand: W' = s q (+ m) is one product (and one sum), each rounded
# to within 2^-24 relative of |W'| <= max|w|, so "half a step" is checked with that much slack.
EPS32 = 2.0**-24


def test_int8_worked_example():
    w = torch.tensor([[0.5, -1.27, 0.004, 0.0], [2.0, 1.0, -0.5, 0.25]])
    q, s = quantize_int8(w, torch.float32)
    # row 0: s = 1.27 / 127 = 0.01 -> q = round(50), -127, round(0.4) = 0, 0
    # row 1: s = 2 / 127 -> q = 127, round(63.5) = 64 (half to even), round(-31.75) = -32, round(15.875) = 16
    assert torch.allclose(s, torch.tensor([0.01, 2.0 / 127]), rtol=tol.fp32_rounding(2), atol=0)  # a float32 quotient vs float64
    assert q.tolist() == [[50, -127, 0, 0], [127, 64, -32, 16]]
    assert q.dtype == torch.int8


def test_int4_worked_example():
    w = torch.tensor([[0.0, 1.5, 3.0, 0.7, -1.0, -1.0, -1.0, -1.0]])
    packed, s, m = quantize_int4(w, group_size=4, scale_dtype=torch.float32)
    # group 0: m = 0, s = 3/15 = 0.2 -> q = 0, round(7.5) = 8, 15, round(3.5) = 4 (half to even)
    # group 1: constant -1: s = 1 (no range), m = -1, q = 0
    assert torch.allclose(s, torch.tensor([[0.2, 1.0]]), rtol=tol.fp32_rounding(2), atol=0) and m.tolist() == [[0.0, -1.0]]
    assert unpack_int4(packed, 8).tolist() == [[0, 8, 15, 4, 0, 0, 0, 0]]
    assert packed.tolist() == [[0 | 8 << 4, 15 | 4 << 4, 0, 0]]  # even column low nibble, odd column high
    assert packed.dtype == torch.uint8 and packed.shape == (1, 4)


@pytest.mark.parametrize("columns", [1, 7, 8, 33])
def test_int4_packing_round_trips(columns):
    q = torch.randint(0, 16, (5, columns), dtype=torch.uint8, generator=torch.Generator().manual_seed(columns))
    packed = pack_int4(q)
    assert packed.shape == (5, (columns + 1) // 2)
    assert torch.equal(unpack_int4(packed, columns), q)


@pytest.mark.parametrize("mode, group_size", [("int8", 0), ("int4", 32), ("int4", 20), ("int4", 128)])
def test_dequantize_is_within_half_a_step(mode, group_size):
    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(1))
    layer = QuantizedWeight.from_weight(w, mode, group_size or 1)
    error = (layer.dequantize() - w).abs()
    if mode == "int8":
        step = layer.scales[:, None]
    else:
        step = layer.scales.repeat_interleave(layer.group_size, dim=1)[:, : w.shape[1]]
    assert (error <= step / 2 + 4 * EPS32 * w.abs().amax()).all()
    assert (error > 0).any()  # the bound is not met trivially by an exact copy


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_zero_row_is_exact(mode):
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    w[2] = 0
    layer = QuantizedWeight.from_weight(w, mode, 32)
    assert torch.isfinite(layer.scales).all()
    assert torch.equal(layer.dequantize()[2], torch.zeros(64))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_outlier_coarsens_only_its_own_row_or_group(mode):
    w = torch.randn(4, 64, generator=torch.Generator().manual_seed(3)) * 0.02
    clean = QuantizedWeight.from_weight(w, mode, 32).dequantize()
    w_out = w.clone()
    w_out[1, 5] = 50.0  # 2500x the typical weight
    layer = QuantizedWeight.from_weight(w_out, mode, 32)
    restored = layer.dequantize()
    step = (50.0 + w_out[1].abs().max()) / (127 if mode == "int8" else 15)
    assert abs(restored[1, 5] - 50.0) <= step / 2  # the outlier itself survives within half its step
    untouched = torch.ones_like(w, dtype=torch.bool)
    if mode == "int8":
        untouched[1] = False
    else:
        untouched[1, :32] = False
    assert torch.equal(restored[untouched], clean[untouched])  # other rows / groups: bit-identical


def test_bf16_scales_are_what_q_was_computed_against():
    w = torch.randn(8, 64, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    for mode in ("int8", "int4"):
        layer = QuantizedWeight.from_weight(w, mode, 32)
        assert layer.scales.dtype == torch.bfloat16 and layer.dequantize().dtype == torch.bfloat16
        # q from the rounded bf16 scale: the half-step bound holds against the stored scale
        error = (layer.dequantize(torch.float32) - w.float()).abs()
        step = layer.scales.float()[:, :, None].expand(-1, -1, 32).flatten(1) if mode == "int4" else layer.scales.float()[:, None]
        assert (error <= step / 2 + 4 * EPS32 * w.float().abs().amax()).all()


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quant_linear_is_x_times_dequantized_weight(mode):
    torch.manual_seed(5)
    linear = nn.Linear(64, 24, bias=True)
    layer = QuantLinear.from_linear(linear, mode, 32)
    x = torch.randn(3, 5, 64)
    expected = x @ layer.dequantize().T + linear.bias
    assert torch.allclose(layer(x), expected, atol=64 * EPS32 * 8, rtol=0)  # 64-term sums, |terms| < 8
    stored = {name: t.dtype for name, t in layer.state_dict().items()}
    qdtype = torch.int8 if mode == "int8" else torch.uint8
    assert stored.pop("qweight") == qdtype and stored.pop("bias") == torch.float32
    assert set(stored) == ({"scales"} if mode == "int8" else {"scales", "mins"})
    assert "weight" not in dict(layer.named_parameters())  # only integers and scales are stored


def test_storage_bytes_is_the_buffers():
    for shape, mode, g in [((24, 64), "int8", 128), ((24, 65), "int4", 32), ((3, 10, 40), "int4", 128)]:
        layer = QuantizedWeight(shape, mode, g, torch.bfloat16)
        actual = sum(t.numel() * t.element_size() for t in layer.buffers())
        assert QuantizedWeight.storage_bytes(shape, mode, g, torch.bfloat16) == actual
    # int4 [24, 65], g 32: 24 x 33 bytes + 2 x 24 x 3 groups x 2 bytes
    assert QuantizedWeight.storage_bytes((24, 65), "int4", 32, torch.bfloat16) == 24 * 33 + 2 * 24 * 3 * 2


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quant_embedding_looks_up_dequantized_rows(mode):
    table = QuantizedWeight.from_weight(torch.randn(50, 16, generator=torch.Generator().manual_seed(6)), mode, 8)
    ids = torch.tensor([[3, 0, 49, 3]])
    assert torch.equal(QuantEmbedding(table)(ids), F.embedding(ids, table.dequantize()))


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quant_experts_equal_float_experts_with_dequantized_weights(mode):
    torch.manual_seed(7)
    experts = StackedExperts(32, 16, 4)
    experts.init_weights(0.1)
    quantized = QuantStackedExperts(experts, mode, 16)
    with torch.no_grad():
        experts.gate_up_proj.copy_(quantized.gate_up_proj.dequantize())
        experts.down_proj.copy_(quantized.down_proj.dequantize())
    experts.use_grouped_mm = False
    for tokens in (1, 6):  # the one-token path and the dispatch path
        x = torch.randn(tokens, 32)
        indices = torch.randint(0, 4, (tokens, 2))
        weights = torch.rand(tokens, 2)
        assert torch.equal(quantized(x, indices, weights), experts(x, indices, weights))


# ---- symmetric int4 (ChatGLM-6B's INT4 form): W' = s (q - 8), s = max|w| / 7, no minimum ----


def test_symmetric_int4_worked_example():
    w = torch.tensor([[0.7, -0.38, 0.1, 0.0, -2.0, 1.1, 0.5, 0.0]])
    layer = QuantizedWeight.from_weight(w, "int4", 4, symmetric=True)
    # group 0: s = 0.7 / 7 = 0.1 -> q - 8 = 7, round(-3.8) = -4, 1, 0
    # group 1: s = 2 / 7 -> -7, round(3.85) = 4, round(1.75) = 2, 0
    assert torch.allclose(layer.scales, torch.tensor([[0.1, 2 / 7]]))
    assert layer.codes().tolist() == [[15, 4, 9, 8, 1, 12, 10, 8]]
    assert set(dict(layer.named_buffers())) == {"qweight", "scales"}  # no minimum stored
    assert torch.allclose(layer.dequantize(), torch.tensor([[0.7, -0.4, 0.1, 0.0, -2.0, 8 / 7, 4 / 7, 0.0]]))


@pytest.mark.parametrize("group_size", [32, None])
def test_symmetric_int4_is_within_half_a_step_and_keeps_zero_rows(group_size):
    w = torch.randn(24, 96, generator=torch.Generator().manual_seed(7))
    w[3] = 0
    layer = QuantizedWeight.from_weight(w, "int4", group_size, symmetric=True)
    assert layer.group_size == (group_size or 96) and layer.scales.shape == (24, 96 // layer.group_size)
    step = layer.scales.repeat_interleave(layer.group_size, dim=1)
    error = (layer.dequantize() - w).abs()
    assert (error <= step / 2 + 4 * EPS32 * w.abs().amax()).all() and (error > 0).any()
    assert torch.equal(layer.dequantize()[3], torch.zeros(96))


def test_symmetric_int4_storage_has_no_minimums():
    # [24, 96], one group per row: 24 x 48 code bytes + 24 bf16 scales
    assert QuantizedWeight.storage_bytes((24, 96), "int4", None, torch.bfloat16, symmetric=True) == 24 * 48 + 24 * 2
    layer = QuantizedWeight((24, 96), "int4", None, torch.bfloat16, symmetric=True)
    assert sum(t.numel() * t.element_size() for t in layer.buffers()) == 24 * 48 + 24 * 2


def test_symmetric_int4_embedding_rows():
    table = QuantizedWeight.from_weight(torch.randn(50, 16, generator=torch.Generator().manual_seed(8)), "int4", 8,
                                        symmetric=True)
    ids = torch.tensor([[3, 0, 49]])
    assert torch.equal(QuantEmbedding(table)(ids), F.embedding(ids, table.dequantize()))
