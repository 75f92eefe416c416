"""Tolerances from the arithmetic they compare, written once (DESIGN: "float32 sums of N terms drift
by about N·eps·|x|").

eps is the gap between 1 and the next number of a format; rounding one operation's result costs at
most u = eps / 2 of it. A sum (or dot product) of n terms evaluated in two different orders - by two
libraries, by two kernels, blocked for SIMD or not, on two CPUs - differs by at most about n·eps·S,
where S is the sum of the terms' magnitudes: each order is within (n - 1)·u·S of the exact sum
(Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §4.2). Each call site names n and
S from its own shapes and data, so a reader can check the figure; comparisons that are equal by
construction use ``torch.equal`` instead (no tolerance at all).

The bounds are worst cases for one sum; a layer of a network chains a few of them (a projection, a
softmax-weighted sum, a norm), and ``chain`` adds them up. Nothing here is tuned to make a test pass:
a bound that a correct implementation could exceed on some CPU is a wrong bound, fix the arithmetic.
"""

from __future__ import annotations

EPS32 = 2.0**-23  # float32: 1.19e-7
EPS64 = 2.0**-52  # float64: 2.2e-16
EPS16 = 2.0**-10  # float16: 9.8e-4
EPS_BF16 = 2.0**-7  # bfloat16: 7.8e-3 (8 significand bits); one rounding costs at most 2^-8 relative


def sum_error(n_terms: int, scale: float, eps: float = EPS32) -> float:
    """Two evaluations of a sum of ``n_terms`` terms whose magnitudes add up to ``scale`` differ by at most this."""
    return n_terms * eps * scale


def fp32_sum(n_terms: int, scale: float = 1.0) -> float:
    """``sum_error`` in float32: n·2^-23·S."""
    return sum_error(n_terms, scale, EPS32)


def fp64_sum(n_terms: int, scale: float = 1.0) -> float:
    """``sum_error`` in float64: n·2^-52·S (a float64 reference against float64 code)."""
    return sum_error(n_terms, scale, EPS64)


def fp32_rounding(n_ops: int, scale: float = 1.0) -> float:
    """A value of size ``scale`` that went through ``n_ops`` float32 roundings (products, quotients,
    square roots, exp/sin/cos, a cast) on one side only, against the exact value: n_ops·2^-24·scale,
    doubled to n_ops·eps·scale for library functions (exp, sin, rsqrt) that are correct to 1 ulp, not 1/2."""
    return n_ops * EPS32 * scale


def fp32_angle(max_angle: float, scale: float = 1.0) -> float:
    """cos / sin of an angle m·w formed in float32 (the frequency w and the product each rounded: 2 u
    relative of the angle), times a value of size ``scale``: the rotation error is ~ angle error x |x|,
    plus the rounding of the rotated value itself (a few eps of |x|)."""
    return (2 * EPS32 * max_angle + 4 * EPS32) * scale


def chain(*bounds: float) -> float:
    """Errors of steps applied one after another add (to first order, each step's gain about 1)."""
    return sum(bounds)


def fp32_matmul(a, b) -> float:
    """``a @ b.T`` in float32 against an exact evaluation: K terms per output, bounded by K·eps times the
    largest sum of term magnitudes, max(|a| @ |b|^T) (read off the operands themselves)."""

    a, b = a.detach().double().abs(), b.detach().double().abs()
    return a.shape[-1] * EPS32 * (a @ b.transpose(-1, -2)).max().item()


def propagated(error_in: float, weight) -> float:
    """An input error of ``error_in`` per element through ``x @ weight.T``: at most error_in times the
    largest row sum of |weight| (the operator inf-norm)."""
    return error_in * weight.detach().double().abs().sum(-1).max().item()


def fp32_forward(widest_sum: int, output) -> float:
    """Two float32 forwards of one model that sum in other orders or blockings (batched or not, cached or not,
    two libraries): each of its sums has at most ``widest_sum`` terms, so n·eps·max|output| bounds the drift
    that reaches the output (tests/models/test_decoder.py measures the model against float64 this way)."""
    return fp32_sum(widest_sum, max(1.0, float(output.detach().abs().max())))
