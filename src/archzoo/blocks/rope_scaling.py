"""Context extension of RoPE: how the inverse frequencies are changed.

Base frequencies (Su et al. 2021): omega_i = theta^(-2i / r), i = 0 .. r/2 - 1.

linear (Chen et al. 2023, "Position Interpolation"):
    omega_i / factor (equivalently, positions divided by factor).

llama3 (Llama 3.1 release, Meta 2024): with wavelength lambda_i = 2 pi / omega_i
and the original context L,
    lambda_i < L / high_freq_factor          -> omega_i               (high frequencies kept)
    lambda_i > L / low_freq_factor           -> omega_i / factor      (low frequencies interpolated)
    otherwise, with s = (L / lambda_i - low) / (high - low),
                                             -> (1 - s) omega_i / factor + s omega_i

yarn (Peng et al. 2023, "YaRN: Efficient Context Window Extension"): dims are
blended between interpolation and extrapolation by a linear ramp over the
dims whose number of rotations within L lies between beta_slow and beta_fast;
cos and sin are multiplied by an attention temperature
    m(s) = 0.1 * mscale * ln(s) + 1  (s > 1),
DeepSeek-V2/V3 use m(factor, mscale) / m(factor, mscale_all_dim) there and fold
m(factor, mscale_all_dim)^2 into the softmax scale (``yarn_softmax_factor``).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch


class RopeScaling(Protocol):
    """The scaling parameters these rules read (``[position.scaling]`` of a config has them)."""

    kind: str  # "linear" | "llama3" | "yarn"
    factor: float
    original_max_seq_len: int | None  # the pre-extension context L (llama3, yarn)
    low_freq_factor: float  # llama3 band edges
    high_freq_factor: float
    beta_fast: float  # yarn ramp, in rotations
    beta_slow: float
    mscale: float  # yarn temperature terms (DeepSeek-V2/V3)
    mscale_all_dim: float


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature m(s) = 0.1 mscale ln(s) + 1 (1 when s <= 1)."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_softmax_factor(scaling: RopeScaling | None) -> float:
    """Extra softmax-scale factor for YaRN with ``mscale_all_dim`` (DeepSeek-V2/V3)."""
    if scaling is None or scaling.kind != "yarn" or not scaling.mscale_all_dim:
        return 1.0
    return yarn_mscale(scaling.factor, scaling.mscale_all_dim) ** 2


def scale_frequencies(
    inv_freq: torch.Tensor, rotary_dim: int, theta: float, scaling: RopeScaling | None
) -> tuple[torch.Tensor, float]:
    """Apply a scaling rule; returns (inverse frequencies, cos/sin multiplier)."""
    if scaling is None:
        return inv_freq, 1.0
    if scaling.kind == "linear":
        return inv_freq / scaling.factor, 1.0
    if scaling.kind == "llama3":
        return _llama3(inv_freq, scaling), 1.0
    return _yarn(rotary_dim, theta, scaling)


def _llama3(inv_freq: torch.Tensor, s: RopeScaling) -> torch.Tensor:
    old_context = s.original_max_seq_len
    low_wavelen = old_context / s.low_freq_factor
    high_wavelen = old_context / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    interpolated = torch.where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (old_context / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor)
    blended = (1 - smooth) * interpolated / s.factor + smooth * interpolated
    is_medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(is_medium, blended, interpolated)


def _yarn(dim: int, theta: float, s: RopeScaling) -> tuple[torch.Tensor, float]:
    if s.mscale and s.mscale_all_dim:
        attention_factor = yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim)
    else:
        attention_factor = yarn_mscale(s.factor)

    def correction_dim(rotations: float) -> float:
        # the dim index whose wavelength fits `rotations` times into the original context
        return dim * math.log(s.original_max_seq_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low = max(math.floor(correction_dim(s.beta_fast)), 0)
    high = min(math.ceil(correction_dim(s.beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device="cpu") - low) / (high - low)).clamp(0, 1)
    extrapolate = 1 - ramp  # 1: keep the original frequency, 0: interpolate
    pos_freqs = theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device="cpu") / dim)
    inv_freq = (1 / (s.factor * pos_freqs)) * (1 - extrapolate) + (1 / pos_freqs) * extrapolate
    return inv_freq, attention_factor
