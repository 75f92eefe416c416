"""``archzoo.train.grad_norm``: the norm clipping divides by, against the same sum in float64.

Tolerance 1e-6 relative: the float32 part is each row's sum of squares; 1024 squares, each
add rounding by at most eps_32 / 2 of the running sum, errors of random sign, ~sqrt(1024)
eps_32 = 2e-6 for one row, and the rows' errors are independent, so their float64 sum is
off by ~2e-6 / sqrt(rows). 1e-6 is that bound for a single row; torch's one-pass float32
norm of the same 2^22 values was off by 8.8e-5 here (module docstring)."""

from __future__ import annotations

import pytest
import torch

from archzoo.train.distributed.batch import OneProcess
from archzoo.train.grad_norm import gradient_norm


def exact(grads: list[torch.Tensor]) -> float:
    return sum(float((g.double() ** 2).sum()) for g in grads) ** 0.5


def head_like_gradient(vocab: int = 32768, d: int = 128) -> torch.Tensor:
    """A head's gradient (p - e_y)^T h / N: a few large rows (the targets') and thousands of small ones, the
    other tokens', ~1/300 of their size (p ~ 1/V against 1 - p, over N ~ 100 positions). The small rows hold
    ~1e-5 of the squared norm: a float32 sum of the row norms loses 4.9e-6 of it, torch's norm 7.7e-5."""
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(vocab, d, generator=g) * 1e-5
    grad[torch.randint(0, vocab, (200,), generator=g)] += torch.randn(200, d, generator=g) * 1e-2
    return grad


@pytest.mark.parametrize(
    "grads",
    [
        [torch.randn(4096, 1024, generator=torch.Generator().manual_seed(1)) * 1e-3],  # 2^22 elements
        [head_like_gradient()],
        [torch.randn(64), torch.randn(8, 96, 32), torch.randn(300, 7)],  # a norm weight, stacked experts, odd rows
    ],
    ids=["large", "head", "mixed shapes"],
)
def test_the_norm_is_the_float64_norm(grads):
    assert abs(float(gradient_norm(grads)) / exact(grads) - 1) < 1e-6


def test_bfloat16_gradients_are_summed_in_float32():
    grads = [torch.randn(2048, 512, generator=torch.Generator().manual_seed(2)).bfloat16()]
    # the inputs are exact bfloat16 values: only the sums round, in float32 and float64
    assert abs(float(gradient_norm(grads)) / exact(grads) - 1) < 1e-6


def test_no_gradients_is_zero():
    assert float(gradient_norm([])) == 0.0


def test_clipping_scales_every_gradient_to_the_maximum_norm():
    params = [torch.nn.Parameter(torch.zeros(300, 64)), torch.nn.Parameter(torch.zeros(64))]
    g = torch.Generator().manual_seed(3)
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    before = [p.grad.clone() for p in params]
    norm = float(OneProcess().clip_gradients(params, max_norm=1.0))
    assert abs(norm / exact(before) - 1) < 1e-6  # the norm before clipping, as log.jsonl reports it
    assert abs(exact([p.grad for p in params]) - 1.0) < 1e-5  # clip_grads_with_norm_ divides by norm + 1e-6
    assert all(torch.allclose(p.grad, b / norm, rtol=1e-6, atol=0) for p, b in zip(params, before))
    unclipped = [p.grad.clone() for p in params]
    OneProcess().clip_gradients(params, max_norm=float("inf"))  # no clipping: the gradients are untouched
    assert all(torch.equal(p.grad, u) for p, u in zip(params, unclipped))
