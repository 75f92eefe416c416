"""GLM 2D RoPE and ChatGLM2 / GLM-4 partial interleaved RoPE against the
reference's worked example (docs/glm.md §6, from running the original code) and the equations."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import tolerances as tol
from archzoo.blocks.rope_2d import GLM2DRotaryEmbedding
from archzoo.config import load_config
from archzoo.models.builders import POSITION_KINDS

X16 = (torch.arange(1, 17, dtype=torch.float32) / 10).view(1, 1, 1, 16)  # 0.1, 0.2, ..., 1.6

# §6, ChatGLM-6B 2D at (position 3, block 2), head_dim 16, fp16-rounded frequencies
CHATGLM6B_2D = [-0.169559, 0.013801, 0.278864, 0.397597, -0.480884, 0.632305, 0.708686, 0.801197,
                -1.556619, 0.702006, 1.069776, 1.196796, 0.277377, 1.570728, 1.521703, 1.602398]  # fmt: skip
# §6, ChatGLM2 / HF glm partial interleaved at position 3
CHATGLM2_PARTIAL = [-0.127223, -0.183887, 0.168393, 0.470791, 0.481778, 0.614728, 0.697597, 0.802096,
                    0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]  # fmt: skip


def test_worked_example_2d():
    rope = GLM2DRotaryEmbedding(16, theta=10000.0, fp16_frequencies=True)
    out = rope(torch.tensor([[[3], [2]]])).apply(X16).flatten()
    # the reference values are printed to 6 decimals (+-5e-7); float32 rotation at angles <= 3 rad of
    # |x| <= 1.6 adds a few roundings (~4 eps x 1.6 = 8e-7 at worst, far less in practice): 1e-6 + printing
    assert torch.allclose(out, torch.tensor(CHATGLM6B_2D), rtol=0, atol=5e-7 + tol.fp32_rounding(4, 1.6))
    # block 0 leaves the second half unchanged
    out0 = rope(torch.tensor([[[3], [0]]])).apply(X16).flatten()
    assert torch.equal(out0[8:], X16.flatten()[8:])
    assert torch.equal(out0[:8], out[:8])  # the first half sees only the position: the same table and products


def test_worked_example_partial_interleaved_through_config():
    cfg = load_config("chatglm2-tiny")
    cfg = cfg.replace(attention=replace(cfg.attention, n_heads=8, n_kv_heads=2, head_dim=16))
    assert (cfg.position.layout, cfg.position.rotary_fraction, cfg.rotary_dim) == ("interleaved", 0.5, 8)
    rope = POSITION_KINDS[cfg.position.kind](cfg)
    out = rope(torch.tensor([[3]])).apply(X16).flatten()
    assert torch.allclose(out, torch.tensor(CHATGLM2_PARTIAL), rtol=0, atol=5e-7 + tol.fp32_rounding(4, 1.6))  # as above


def hand_rotate_2d(x: torch.Tensor, pos: int, block: int, theta: float = 10000.0) -> torch.Tensor:
    """The equations of §2.3 written as loops (no fp16 rounding)."""
    d = x.shape[-1]
    r = d // 2
    out = x.clone()
    for offset, m in ((0, pos), (r, block)):
        for i in range(r // 2):
            omega = theta ** (-2 * i / r)
            c, s = math.cos(m * omega), math.sin(m * omega)
            a, b = x[..., offset + i], x[..., offset + i + r // 2]
            out[..., offset + i] = a * c - b * s
            out[..., offset + i + r // 2] = b * c + a * s
    return out


def test_matches_equations_on_random_vectors():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 4, 32)
    ids = torch.tensor([[[0, 5, 9, 9], [0, 1, 2, 3]]])
    out = GLM2DRotaryEmbedding(32)(ids).apply(x)
    for t in range(4):
        expected = hand_rotate_2d(x[:, :, t], int(ids[0, 0, t]), int(ids[0, 1, t]))
        # float32 both, angles <= 9 rad, |x| <= ~4: the angle's rounding times |x| (fp32_angle)
        assert torch.allclose(out[:, :, t], expected, rtol=0, atol=tol.fp32_angle(9, x.abs().max().item()))


def test_relative_in_both_coordinates():
    """q.k depends on (p_q - p_k, b_q - b_k) only."""
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 64), torch.randn(1, 1, 1, 64)
    rope = GLM2DRotaryEmbedding(64)

    def score(pq, bq, pk, bk):
        rq = rope(torch.tensor([[[pq], [bq]]])).apply(q)
        rk = rope(torch.tensor([[[pk], [bk]]])).apply(k)
        return float((rq * rk).sum())

    assert score(7, 3, 2, 1) == pytest.approx(score(15, 4, 10, 2), abs=1e-4)
    assert score(7, 3, 2, 1) != pytest.approx(score(7, 3, 2, 2), abs=1e-3)


def test_one_dimensional_ids_mean_block_zero_and_fp16_flag():
    rope = GLM2DRotaryEmbedding(128, fp16_frequencies=True)
    x = torch.randn(2, 2, 5, 128)
    pos = torch.arange(5).expand(2, 5)
    flat = rope(pos).apply(x)
    two = rope(torch.stack([pos, torch.zeros_like(pos)], dim=1)).apply(x)
    assert torch.equal(flat, two)
    exact = 10000.0 ** (-torch.arange(0, 64, 2).double() / 64)
    assert torch.equal(rope.inv_freq, exact.half().float())
    rel = ((rope.inv_freq.double() - exact) / exact).abs().max()
    assert 1e-5 < rel < 4.2e-4  # the rounding the reference measured (max 4.1e-4)


def test_bad_shapes():
    with pytest.raises(ValueError, match="multiple of 4"):
        GLM2DRotaryEmbedding(18)
    with pytest.raises(ValueError, match=r"\[batch, 2, seq\]"):
        GLM2DRotaryEmbedding(16)(torch.zeros(1, 3, 4, dtype=torch.long))


def test_range_rotation_equals_explicit_positions_with_block_zero():
    rope = GLM2DRotaryEmbedding(16)
    x = torch.randn(1, 3, 5, 16)
    got = rope.range_rotation(4, 5, torch.float32, torch.device("cpu")).apply(x)
    want = rope(torch.arange(4, 9)[None]).apply(x)
    # the same angles from a float arange or from integer positions: at most one rounding of angles <= 8 rad
    torch.testing.assert_close(got, want, rtol=0, atol=tol.fp32_angle(8, x.abs().max().item()))
