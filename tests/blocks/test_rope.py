"""RoPE (Su et al. 2021) against its defining properties and a hand-written rotation, and the
context-extension rules (linear, Llama 3.1, YaRN) against their published definitions and
``transformers.modeling_rope_utils``."""

from __future__ import annotations

import math

import pytest
import torch

import tolerances as tol
from archzoo.blocks.attention import Attention, AttentionContext
from archzoo.blocks.masks import build_mask
from archzoo.blocks.rope import RotaryEmbedding, inverse_frequencies, rotate_half, rotate_pairs
from archzoo.blocks.rope_scaling import yarn_mscale
from archzoo.config import RopeScalingSection

HEAD_DIM = 16
LAYOUTS = ["half", "interleaved"]


def rotate(rope: RotaryEmbedding, x: torch.Tensor, positions: list[float]) -> torch.Tensor:
    """Rotate ``x`` ``[seq, head_dim]`` (one head) at the given positions."""
    pos = torch.tensor([positions])
    return rope(pos).apply(x[None, None])[0, 0]


def pair_indices(rotary_dim: int, layout: str) -> list[tuple[int, int]]:
    """The dims that RoPE rotates together: (i, i + r/2) or (2i, 2i + 1), for frequency i."""
    half = rotary_dim // 2
    if layout == "half":
        return [(i, i + half) for i in range(half)]
    return [(2 * i, 2 * i + 1) for i in range(half)]


def hand_rotation(x: torch.Tensor, position: float, rotary_dim: int, theta: float, layout: str) -> torch.Tensor:
    """a' = a cos(m w_i) - b sin(m w_i), b' = b cos(m w_i) + a sin(m w_i), w_i = theta^(-2i/r), in float64."""
    out = x.double().clone()
    for i, (a, b) in enumerate(pair_indices(rotary_dim, layout)):
        angle = position * theta ** (-2 * i / rotary_dim)
        c, s = math.cos(angle), math.sin(angle)
        out[..., a] = x[..., a].double() * c - x[..., b].double() * s
        out[..., b] = x[..., b].double() * c + x[..., a].double() * s
    return out


def interleaved_to_half(rotary_dim: int, head_dim: int) -> torch.Tensor:
    """perm with x_half = x_interleaved[perm]: half dim i <- 2i, half dim i + r/2 <- 2i + 1; tail unchanged."""
    rotated = list(range(0, rotary_dim, 2)) + list(range(1, rotary_dim, 2))
    return torch.tensor(rotated + list(range(rotary_dim, head_dim)))


# ---- the rotation itself ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("fraction", "theta"), [(1.0, 10000.0), (0.5, 10000.0), (1.0, 500000.0), (0.25, 1e6)])
def test_matches_hand_written_rotation(layout, fraction, theta):
    torch.manual_seed(0)
    rotary_dim = int(HEAD_DIM * fraction)
    rope = RotaryEmbedding(rotary_dim, theta=theta, layout=layout)
    x = torch.randn(5, HEAD_DIM)
    positions = [0, 1, 7, 30, 123]
    got = rotate(rope, x, positions)
    for row, m in enumerate(positions):
        expected = hand_rotation(x[row], m, rotary_dim, theta, layout)
        # float32 angles up to 123 rad against float64 ones, rotating values |x| <= max |x|
        torch.testing.assert_close(got[row].double(), expected, rtol=0, atol=tol.fp32_angle(max(positions), x.abs().max().item()))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("fraction", "theta"), [(1.0, 10000.0), (0.5, 10000.0), (1.0, 500000.0), (0.5, 1e6)])
def test_dot_product_depends_only_on_relative_position(layout, fraction, theta):
    torch.manual_seed(1)
    rope = RotaryEmbedding(int(HEAD_DIM * fraction), theta=theta, layout=layout)
    q, k = torch.randn(HEAD_DIM), torch.randn(HEAD_DIM)
    for offset in (0, 3, -5, 17):
        pairs = [(m, m - offset) for m in (20, 23, 41, 60)]
        dots = [torch.dot(rotate(rope, q[None], [m])[0], rotate(rope, k[None], [n])[0]).item() for m, n in pairs]
        for d in dots[1:]:
            # q and k rotated at angles <= 65 rad (an error of fp32_angle per dim, |q|, |k| <= 4), then a 16-term dot
            rotation_error = 2 * 16 * 4 * tol.fp32_angle(65, 4.0)  # 16 dims, each side's error times the other's |.|
            assert d == pytest.approx(dots[0], rel=0, abs=rotation_error + tol.fp32_sum(16, 16 * 16.0))
    # and it does depend on the offset (else the test above proves nothing)
    d0 = torch.dot(rotate(rope, q[None], [20])[0], rotate(rope, k[None], [20])[0]).item()
    d5 = torch.dot(rotate(rope, q[None], [25])[0], rotate(rope, k[None], [20])[0]).item()
    assert abs(d0 - d5) > 1e-3


@pytest.mark.parametrize("layout", LAYOUTS)
def test_rotation_preserves_each_pair_norm(layout):
    torch.manual_seed(2)
    rope = RotaryEmbedding(HEAD_DIM, layout=layout)
    x = torch.randn(4, HEAD_DIM)
    y = rotate(rope, x, [1, 9, 50, 200])
    for a, b in pair_indices(HEAD_DIM, layout):
        # a rotation keeps the pair's norm whatever its angle error; each rotated coordinate carries ~2 eps
        # of the pair norm (products, difference), cos^2 + sin^2 = 1 +- 2 eps: ~10 eps of a^2 + b^2
        torch.testing.assert_close(y[:, a] ** 2 + y[:, b] ** 2, x[:, a] ** 2 + x[:, b] ** 2, rtol=tol.fp32_rounding(10), atol=0)
    assert not torch.allclose(y, x, atol=1e-3)  # rotated by angles of order 1: O(|x|) moves


@pytest.mark.parametrize("layout", LAYOUTS)
def test_position_zero_is_identity(layout):
    torch.manual_seed(3)
    rope = RotaryEmbedding(HEAD_DIM, layout=layout)
    x = torch.randn(3, HEAD_DIM)
    assert torch.equal(rotate(rope, x, [0, 0, 0]), x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_partial_rotary_leaves_tail_untouched(layout):
    torch.manual_seed(4)
    rotary_dim = HEAD_DIM // 4
    rope = RotaryEmbedding(rotary_dim, layout=layout)
    x = torch.randn(3, HEAD_DIM)
    y = rotate(rope, x, [5, 11, 99])
    assert torch.equal(y[:, rotary_dim:], x[:, rotary_dim:])
    assert not torch.allclose(y[:, :rotary_dim], x[:, :rotary_dim], atol=1e-3)  # O(|x|) moves, not rounding


def test_rotate_helpers_by_hand():
    x = torch.arange(1.0, 7.0)
    assert rotate_half(x).tolist() == [-4.0, -5.0, -6.0, 1.0, 2.0, 3.0]
    assert rotate_pairs(x).tolist() == [-2.0, 1.0, -4.0, 3.0, -6.0, 5.0]


def test_odd_rotary_dim_rejected():
    with pytest.raises(ValueError, match="rotary_dim"):
        RotaryEmbedding(7)


# ---- the two layouts are one rotation up to a permutation of head dims -------------------------


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_layouts_agree_after_permutation(fraction):
    torch.manual_seed(5)
    rotary_dim = int(HEAD_DIM * fraction)
    perm = interleaved_to_half(rotary_dim, HEAD_DIM)
    half, inter = RotaryEmbedding(rotary_dim, layout="half"), RotaryEmbedding(rotary_dim, layout="interleaved")
    q, k = torch.randn(4, HEAD_DIM), torch.randn(4, HEAD_DIM)
    positions = [0, 3, 17, 64]
    q_i, k_i = rotate(inter, q, positions), rotate(inter, k, positions)
    q_h, k_h = rotate(half, q[:, perm], positions), rotate(half, k[:, perm], positions)
    # the same angles and products, arranged differently (a rotate-half vs a pair swap): a few roundings of |q| <= 4
    torch.testing.assert_close(q_h, q_i[:, perm], rtol=0, atol=tol.fp32_rounding(4, 4.0))
    torch.testing.assert_close(q_h @ k_h.T, q_i @ k_i.T, rtol=0, atol=tol.fp32_sum(16, 16 * 16.0))  # 16 terms <= 16
    # without the permutation the layouts are different functions (O(1) apart)
    assert not torch.allclose(rotate(half, q, positions) @ rotate(half, k, positions).T, q_i @ k_i.T, atol=1e-3)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_attention_with_permuted_projection_rows_agrees(fraction):
    """A checkpoint in one layout runs in the other once the q/k projection rows of each head are permuted."""
    torch.manual_seed(6)
    d_model, n_heads, n_kv = 32, 4, 2
    rotary_dim = int(HEAD_DIM * fraction)
    perm = interleaved_to_half(rotary_dim, HEAD_DIM)
    inter_attn = Attention(d_model, n_heads, n_kv, HEAD_DIM)
    half_attn = Attention(d_model, n_heads, n_kv, HEAD_DIM)
    half_attn.load_state_dict(inter_attn.state_dict())
    with torch.no_grad():
        for proj, heads in ((half_attn.q_proj, n_heads), (half_attn.k_proj, n_kv)):
            rows = torch.cat([h * HEAD_DIM + perm for h in range(heads)])
            proj.weight.copy_(proj.weight[rows])
    x = torch.randn(2, 9, d_model)
    position_ids = torch.arange(9)[None]
    outputs = []
    for attn, layout in ((inter_attn, "interleaved"), (half_attn, "half")):
        rotation = RotaryEmbedding(rotary_dim, layout=layout)(position_ids)
        ctx = AttentionContext(mask=build_mask(9, 0, None), rotation=rotation)
        outputs.append(attn(x, ctx))
    # the same numbers through permuted rows: q.k sums of 16 terms, a softmax, a 9-slot weighted sum and o_proj's
    # 8 x 16 terms, in other orders; |x W| <= ~3, scores <= ~10: a few 16- to 128-term sums of O(1-10) terms
    atol = tol.chain(tol.fp32_sum(16, 10.0), tol.fp32_sum(9, 3.0), tol.fp32_sum(128, 3.0))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=atol)


# ---- context extension -----------------------------------------------------------------------


def base_frequencies(rotary_dim: int, theta: float) -> list[float]:
    return [theta ** (-2 * i / rotary_dim) for i in range(rotary_dim // 2)]


def llama31_rule(omega: float, factor: float, low: float, high: float, context: int) -> float:
    """Llama 3.1 release: long wavelengths (> L/low) are interpolated by `factor`, short ones
    (< L/high) kept, and the band between blends the two by how many times it fits in L."""
    wavelength = 2 * math.pi / omega
    if wavelength < context / high:
        return omega
    if wavelength > context / low:
        return omega / factor
    smooth = (context / wavelength - low) / (high - low)
    return (1 - smooth) * omega / factor + smooth * omega


LLAMA31 = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_seq_len": 8192}


def test_llama3_scaling_follows_published_rule():
    rotary_dim, theta = 128, 500000.0  # Llama 3.1 8B
    scaling = RopeScalingSection(kind="llama3", **LLAMA31)
    got, attention_factor = inverse_frequencies(rotary_dim, theta, scaling)
    assert attention_factor == 1.0
    base = base_frequencies(rotary_dim, theta)
    expected = [llama31_rule(w, 8.0, 1.0, 4.0, 8192) for w in base]
    # float32 frequencies against float64: theta^(-2i/r) (pow, 1 ulp), the band blend (3-4 roundings)
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64), rtol=tol.fp32_rounding(8), atol=0)
    # all three bands occur, so each branch of the rule was exercised
    ratios = [g / w for g, w in zip(got.tolist(), base)]
    assert any(r == pytest.approx(1.0) for r in ratios)
    assert any(r == pytest.approx(1 / 8) for r in ratios)
    assert any(1 / 8 + 1e-3 < r < 1 - 1e-3 for r in ratios)


def test_llama3_scaling_matches_transformers():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import _compute_llama3_parameters

    config = LlamaConfig(
        hidden_size=1024,
        num_attention_heads=8,
        max_position_embeddings=131072,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    )
    expected, expected_factor = _compute_llama3_parameters(config)
    got, factor = inverse_frequencies(128, 500000.0, RopeScalingSection(kind="llama3", **LLAMA31))
    # two float32 evaluations of the same formula (pow, then up to 4 roundings of the blend) each side
    torch.testing.assert_close(got, expected, rtol=tol.fp32_rounding(8), atol=0)
    assert factor == expected_factor


def test_linear_scaling_is_position_interpolation():
    """omega / factor: position m under factor f rotates exactly like position m / f unscaled."""
    scaled = RotaryEmbedding(HEAD_DIM, scaling=RopeScalingSection(kind="linear", factor=4.0))
    plain = RotaryEmbedding(HEAD_DIM)
    assert torch.equal(scaled.inv_freq, plain.inv_freq / 4.0)  # dividing by 4 is exact in binary
    positions = torch.tensor([[0.0, 4.0, 10.0, 400.0]])
    a, b = scaled(positions), plain(positions / 4.0)
    # m w / 4 and (m / 4) w are one rounding apart: angles <= 400 rad, cos and sin of size 1
    torch.testing.assert_close(a.cos, b.cos, rtol=0, atol=tol.fp32_angle(400))
    torch.testing.assert_close(a.sin, b.sin, rtol=0, atol=tol.fp32_angle(400))


def test_yarn_temperature_formula():
    """m(s) = 0.1 ln(s) + 1 (YaRN eq. for sqrt(1/t)); 1 when no extension."""
    assert yarn_mscale(1.0) == 1.0
    assert yarn_mscale(0.5) == 1.0
    assert yarn_mscale(4.0) == pytest.approx(0.1 * math.log(4.0) + 1)
    assert yarn_mscale(40.0, 0.707) == pytest.approx(0.1 * 0.707 * math.log(40.0) + 1)


YARN_CASES = {
    "plain": dict(factor=4.0, original_max_seq_len=1024),
    "deepseek_v3": dict(factor=40.0, original_max_seq_len=4096, mscale=1.0, mscale_all_dim=1.0),
    "deepseek_v2_lite": dict(factor=40.0, original_max_seq_len=4096, mscale=0.707, mscale_all_dim=0.707),
    "mscale_ratio": dict(factor=16.0, original_max_seq_len=2048, mscale=1.0, mscale_all_dim=0.5),
    "betas": dict(factor=8.0, original_max_seq_len=512, beta_fast=16.0, beta_slow=2.0),
}


@pytest.mark.parametrize("case", sorted(YARN_CASES))
@pytest.mark.parametrize(("head_dim", "fraction", "theta"), [(64, 1.0, 10000.0), (128, 0.5, 1e6)])
def test_yarn_matches_transformers(case, head_dim, fraction, theta):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import _compute_yarn_parameters

    fields = YARN_CASES[case]
    hf_params = {
        "rope_type": "yarn",
        "rope_theta": theta,
        "factor": fields["factor"],
        "original_max_position_embeddings": fields["original_max_seq_len"],
        "partial_rotary_factor": fraction,
    }
    for ours, theirs in (("beta_fast", "beta_fast"), ("beta_slow", "beta_slow")):
        if ours in fields:
            hf_params[theirs] = fields[ours]
    if "mscale_all_dim" in fields:
        hf_params["mscale"], hf_params["mscale_all_dim"] = fields["mscale"], fields["mscale_all_dim"]
    config = LlamaConfig(
        hidden_size=head_dim * 4,
        num_attention_heads=4,
        head_dim=head_dim,
        max_position_embeddings=int(fields["factor"] * fields["original_max_seq_len"]),
        rope_parameters=hf_params,
    )
    expected, expected_factor = _compute_yarn_parameters(config)
    rotary_dim = int(head_dim * fraction)
    got, factor = inverse_frequencies(rotary_dim, theta, RopeScalingSection(kind="yarn", **fields))
    # the same float32 formula both sides: pow, the ramp (a clamp, 3 roundings) and the blend (3)
    torch.testing.assert_close(got, expected, rtol=tol.fp32_rounding(8), atol=0)
    assert factor == pytest.approx(expected_factor, rel=1e-12)
    # the highest frequency extrapolates (kept), the lowest interpolates (divided by the factor)
    base = base_frequencies(rotary_dim, theta)
    assert got[0].item() == pytest.approx(base[0], rel=1e-6)
    assert got[-1].item() == pytest.approx(base[-1] / fields["factor"], rel=1e-5)


def test_yarn_attention_factor_multiplies_cos_and_sin():
    scaling = RopeScalingSection(kind="yarn", factor=4.0, original_max_seq_len=1024)
    rope = RotaryEmbedding(HEAD_DIM, scaling=scaling)
    rotation = rope(torch.tensor([[0, 5]]))
    m = 0.1 * math.log(4.0) + 1
    # position 0: cos = 1 exactly, times m rounded to float32 once
    torch.testing.assert_close(rotation.cos[0, 0, 0], torch.full((HEAD_DIM,), m), rtol=tol.fp32_rounding(1), atol=0)
    norms = rotation.cos**2 + rotation.sin**2  # m^2 (cos^2 + sin^2): cos, sin (1 ulp), m, 2 squares, a sum
    torch.testing.assert_close(norms, torch.full_like(norms, m * m), rtol=tol.fp32_rounding(8), atol=0)
