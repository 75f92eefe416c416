"""RMSNorm and LayerNorm against their equations (Zhang & Sennrich 2019; Ba et al. 2016)."""

from __future__ import annotations

import typing

import pytest
import torch

import tolerances as tol
from archzoo.blocks.norm import NORM_KINDS, LayerNorm, RMSNorm
from archzoo.config.sections import NormKind


def rms_reference(x: torch.Tensor, gain: torch.Tensor, eps: float) -> torch.Tensor:
    """y_i = x_i / sqrt(mean_j x_j^2 + eps) * g_i, written out in float64."""
    x64 = x.double()
    mean_square = (x64 * x64).sum(-1, keepdim=True) / x64.shape[-1]
    return x64 / torch.sqrt(mean_square + eps) * gain.double()


def layernorm_reference(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """y = (x - mean) / sqrt(var + eps) * g + b, biased variance, in float64."""
    x64 = x.double()
    n = x64.shape[-1]
    mean = x64.sum(-1, keepdim=True) / n
    var = ((x64 - mean) ** 2).sum(-1, keepdim=True) / n
    return (x64 - mean) / torch.sqrt(var + eps) * gain.double() + bias.double()


def test_rmsnorm_worked_example():
    # x = (3, 4): mean square = 12.5, rms = sqrt(12.5 + eps)
    norm = RMSNorm(2, eps=0.0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0]))
    y = norm(torch.tensor([[3.0, 4.0]]))
    rms = 12.5**0.5
    # float32: 2 squares, a sum, rsqrt (1 ulp) and 2 products, each relative to y: < 6 eps of it
    torch.testing.assert_close(y, torch.tensor([[3.0 / rms, 2 * 4.0 / rms]]), rtol=tol.fp32_rounding(6), atol=0)


def test_rmsnorm_equals_formula():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16)
    # relative to each y_i = x_i r g_i: the 16-term mean square (16 eps), then rsqrt and 2 products
    rtol = tol.chain(tol.fp32_sum(16), tol.fp32_rounding(4))
    torch.testing.assert_close(norm(x).double(), rms_reference(x, norm.weight, 1e-5), rtol=rtol, atol=0)


def test_rmsnorm_eps_counts_where_it_matters():
    """For |x| ~ 1e-3 the mean square (~1e-6) is as large as eps: eps must enter exactly once, unscaled."""
    torch.manual_seed(3)
    x = 1e-3 * torch.randn(4, 32)
    for eps in (1e-6, 1e-5):
        rtol = tol.chain(tol.fp32_sum(32), tol.fp32_rounding(4))  # as above, 32 terms: 4.3e-6 of each y_i
        torch.testing.assert_close(RMSNorm(32, eps)(x).double(), rms_reference(x, torch.ones(32), eps), rtol=rtol, atol=0)


def test_rmsnorm_gradients_equal_the_formulas():
    torch.manual_seed(4)
    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    norm = norm.double()
    grad_out = torch.randn(3, 16, dtype=torch.float64)
    x_grad, weight_grad = torch.autograd.grad(norm(x), (x, norm.weight), grad_out)
    x_ref = x.detach().clone().requires_grad_()
    weight_ref = norm.weight.detach().clone().requires_grad_()
    ref_x_grad, ref_weight_grad = torch.autograd.grad(rms_reference(x_ref, weight_ref, 1e-5), (x_ref, weight_ref), grad_out)
    # float64 both: a few 16-term sums of terms below ~100 (|g|, |x|, |dy| <= ~4, 1 / rms <= ~2)
    torch.testing.assert_close(x_grad, ref_x_grad, rtol=0, atol=tol.fp64_sum(4 * 16, 100.0))
    torch.testing.assert_close(weight_grad, ref_weight_grad, rtol=0, atol=tol.fp64_sum(4 * 16, 100.0))


def test_rmsnorm_does_not_centre():
    """Adding a constant changes RMSNorm's output; LayerNorm's is unchanged (it subtracts the mean)."""
    torch.manual_seed(1)
    x = torch.randn(4, 16)
    rms, ln = RMSNorm(16), LayerNorm(16)
    assert not torch.allclose(rms(x), rms(x + 3.0), atol=1e-3)  # it moves outputs by O(1), not by rounding
    # x + 3 (|.| <= 6) is rounded once and centred by a 16-term mean: ~2 eps x 6 each side, over sigma ~ 1;
    # the 16-term variance, 16 eps relative, moves |y| <= 3 by half that
    atol = tol.chain(2 * tol.fp32_rounding(2, 6.0), tol.fp32_sum(16, 3.0))
    torch.testing.assert_close(ln(x), ln(x + 3.0), rtol=0, atol=atol)
    # RMSNorm of a centred vector equals LayerNorm without the bias (same gains): the only difference is centring
    centred = x - x.mean(-1, keepdim=True)
    # the same float32 statistics in two orders: 16-term sums, twice, of outputs |y| <= 3
    torch.testing.assert_close(RMSNorm(16, eps=1e-5)(centred), ln(x), rtol=0, atol=tol.fp32_sum(2 * 16, 3.0))


def test_rmsnorm_has_no_bias():
    assert [name for name, _ in RMSNorm(8).named_parameters()] == ["weight"]


def test_layernorm_equals_formula_with_bias():
    torch.manual_seed(2)
    norm = LayerNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
        norm.bias.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16) * 4 + 2
    expected = layernorm_reference(x, norm.weight, norm.bias, 1e-5)
    # |x| <= ~14 centred by a 16-term mean (eps x 14 per term, over sigma ~ 4, times |g| <= 3) and the
    # 16-term variance (16 eps relative, halved by the sqrt, of |y g| <= ~10)
    atol = tol.chain(tol.fp32_sum(16, 14.0 * 3 / 4), tol.fp32_sum(16, 10.0))
    torch.testing.assert_close(norm(x).double(), expected, rtol=0, atol=atol)


# unit roundoff: the output may carry one rounding to the half type, nothing more
UNIT_ROUNDOFF = {torch.float16: 2**-11, torch.bfloat16: 2**-8}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rmsnorm_half_precision_statistics_in_float32(dtype):
    """Half-precision statistics fail here: 1000^2 overflows float16, and bfloat16 statistics round
    the mean square and its rsqrt. The output must be the float64 result of the same (exactly
    representable) inputs, rounded once."""
    torch.manual_seed(3)
    dim = 4096
    x = ((torch.rand(2, dim) + 0.5) * 1000).to(dtype)  # every x^2 > 65504 (float16 max)
    norm = RMSNorm(dim, eps=1e-6).to(dtype)
    y = norm(x)
    assert y.dtype == dtype
    assert torch.isfinite(y).all()
    expected = rms_reference(x, norm.weight, 1e-6)
    torch.testing.assert_close(y.double(), expected, rtol=1.02 * UNIT_ROUNDOFF[dtype], atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_layernorm_half_precision_statistics_in_float32(dtype):
    torch.manual_seed(4)
    dim = 4096
    # mean 200, std 3: a half-precision mean is off by up to half a unit (0.06 in float16, 0.5 in
    # bfloat16), which a half-precision centring would carry into every output
    x = (torch.randn(2, dim) * 3 + 200).to(dtype)
    norm = LayerNorm(dim, eps=1e-5).to(dtype)
    y = norm(x)
    assert torch.isfinite(y).all()
    expected = layernorm_reference(x, norm.weight, norm.bias, 1e-5)
    # one rounding to the half type, plus the float32 statistics: a 4096-term mean of values ~200 carries
    # ~4096 eps_32 x 200 / 4096 = 2.4e-5 absolute into x - mean, over sigma = 3, times |g| = 1: < 1e-4
    torch.testing.assert_close(y.double(), expected, rtol=UNIT_ROUNDOFF[dtype], atol=1e-4)


def test_norm_kinds_match_literal():
    assert set(NORM_KINDS) == set(typing.get_args(NormKind))


@pytest.mark.parametrize("kind", sorted(NORM_KINDS))
def test_norm_kinds_take_dim_and_eps(kind):
    norm = NORM_KINDS[kind](8, 1e-3)
    assert norm.eps == 1e-3
    assert norm(torch.randn(2, 8)).shape == (2, 8)


def test_rmsnorm_float64_is_not_downcast():
    """float64 inputs keep float64 precision (reference checks and gradcheck rely on it)."""
    torch.manual_seed(5)
    norm = RMSNorm(16, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16, dtype=torch.float64))
    x = torch.randn(3, 16, dtype=torch.float64)
    y = norm(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, rms_reference(x, norm.weight, 1e-6), rtol=0, atol=tol.fp64_sum(16, 10.0))
