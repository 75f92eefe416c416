"""Normalisation layers.

RMSNorm (Zhang & Sennrich, 2019, "Root Mean Square Layer Normalization"):

    y = x / sqrt(mean_i(x_i^2) + eps) * g

No mean is subtracted and there is no bias: only the scale of the vector is
normalised. Computed in float32 (float64 stays float64) and cast back before
the gain, as LLaMA's reference code and ``transformers`` do, so half-precision
models match.

LayerNorm (Ba et al., 2016, "Layer Normalization"):

    y = (x - mean(x)) / sqrt(var(x) + eps) * g + b
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """y = x / rms(x) * g, over the last dimension."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.empty(dim))
        nn.init.ones_(self.weight)  # in place (not torch.ones), so a meta build's replay sees it (init_by_parts.py)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        normed = wide * torch.rsqrt(wide.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class LayerNorm(nn.LayerNorm):
    """y = (x - mean) / std * g + b, over the last dimension (with bias)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__(dim, eps=eps)


NORM_KINDS = {"rmsnorm": RMSNorm, "layernorm": LayerNorm}
"""``[norm] kind`` -> class; every class takes ``(dim, eps)``."""
