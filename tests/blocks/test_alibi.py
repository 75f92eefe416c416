"""ALiBi slopes and bias against Press et al. 2022 ("Train Short, Test Long") and BLOOM's code."""

from __future__ import annotations

import pytest
import torch

import tolerances as tol
from archzoo.blocks.alibi import Alibi, alibi_slopes


def test_eight_heads_are_negative_powers_of_two():
    """The paper: for 8 heads the slopes are 1/2^1, 1/2^2, ..., 1/2^8."""
    assert alibi_slopes(8).tolist() == [2.0**-h for h in range(1, 9)]


def test_sixteen_heads_are_powers_of_root_two():
    """For n a power of two the sequence starts at 2^(-8/n) and uses that as its ratio."""
    # float64 powers rounded to float32 once, both sides: at most 1 ulp apart (a tie broken differently)
    torch.testing.assert_close(alibi_slopes(16), torch.tensor([2.0 ** (-0.5 * h) for h in range(1, 17)]), rtol=tol.fp32_rounding(2), atol=0)


@pytest.mark.parametrize(
    ("n_heads", "extra"),
    [
        # the 8-head slopes, then the odd-indexed slopes of 16 heads: 2^-0.5, 2^-1.5, ...
        (12, [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]),
        # the 4-head slopes (2^-2, 2^-4, 2^-6, 2^-8), then the odd slopes of 8 heads: 2^-1, 2^-3
        (6, [2**-1, 2**-3]),
    ],
)
def test_non_power_of_two_rule(n_heads, extra):
    closest = 8 if n_heads == 12 else 4
    power_part = [2 ** (-8 * h / closest) for h in range(1, closest + 1)]
    # float64 powers rounded to float32 once, both sides: at most 1 ulp apart
    torch.testing.assert_close(alibi_slopes(n_heads), torch.tensor(power_part + extra), rtol=tol.fp32_rounding(2), atol=0)


@pytest.mark.parametrize("n_heads", range(1, 41))
def test_slopes_match_bloom(n_heads):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    # BLOOM returns slope_h * position for positions 0, 1: position 1 holds the slopes
    bloom = build_alibi_tensor(torch.ones(1, 2), n_heads, torch.float32)[:, 0, 1]
    # ours: the float64 start^k rounded once; BLOOM raises a float32-rounded start (1/2 ulp) to powers k <= n_heads
    # in float32 (k/2 ulp of the result, plus pow's own ulp); times position 1.0 is exact
    torch.testing.assert_close(alibi_slopes(n_heads), bloom, rtol=tol.fp32_rounding(n_heads // 2 + 2), atol=0)


def test_bias_is_slope_times_key_minus_query():
    n_heads, q_len, kv_len, past = 4, 3, 7, 4
    bias = Alibi(n_heads).bias(q_len, kv_len, past)
    assert bias.shape == (n_heads, q_len, kv_len)
    slopes = alibi_slopes(n_heads)
    for h in range(n_heads):
        for i in range(q_len):
            for k in range(kv_len):
                assert bias[h, i, k].item() == pytest.approx(slopes[h].item() * (k - (past + i)))


def test_bias_zero_on_diagonal_and_negative_in_the_past():
    bias = Alibi(12).bias(6, 6, 0)
    assert torch.equal(bias.diagonal(dim1=-2, dim2=-1), torch.zeros(12, 6))
    below = torch.ones(6, 6, dtype=torch.bool).tril(-1)
    assert (bias[:, below] < 0).all()


def test_relative_bias_gives_same_softmax_as_blooms_absolute_bias():
    """BLOOM adds m_h * k (absolute); m_h * (k - q) differs by a per-row constant, so softmax agrees."""
    torch.manual_seed(0)
    n_heads, seq = 6, 5
    scores = torch.randn(n_heads, seq, seq)
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    ours = (scores + Alibi(n_heads).bias(seq, seq, 0)).masked_fill(~causal, float("-inf")).softmax(-1)
    absolute = alibi_slopes(n_heads)[:, None, None] * torch.arange(seq).float()[None, None, :]
    bloom = (scores + absolute).masked_fill(~causal, float("-inf")).softmax(-1)
    # the logits s + m (k - q) and s + m k (|.| <= S) each rounded once, then softmax's max-shift, exp (1 ulp)
    # and normalising sum of <= 5 terms: probabilities p <= 1 move by ~ (2 S + 4 + 5) eps
    logit_scale = (scores.abs().max() + absolute.abs().max()).item()
    torch.testing.assert_close(ours, bloom, rtol=0, atol=tol.fp32_rounding(9, 1.0) + 2 * tol.fp32_rounding(1, logit_scale))


@pytest.mark.parametrize(("past", "kv_len"), [(0, 1), (5, 6), (5, 3), (255, 256), (300, 301), (1000, 1001)])
def test_single_query_bias_from_the_cached_ramp_equals_the_formula(past, kv_len):
    """Decoding's bias (a slice of a cached table, regrown past 256 slots) = m_h * (k - q), exactly."""
    alibi = Alibi(6)
    got = alibi.bias(1, kv_len, past)
    slopes = alibi_slopes(6)
    expected = torch.tensor(
        [[[slopes[h].item() * float(k - past) for k in range(kv_len)]] for h in range(6)], dtype=torch.float32
    )
    assert torch.equal(got, expected)
