"""Rotary position embedding (RoPE; Su et al. 2021, "RoFormer").

Each pair of dims (a, b) of a query or key at position m is rotated by the
angle m * omega_i, with omega_i = theta^(-2i / r) over the r rotated dims:

    a' = a cos(m omega_i) - b sin(m omega_i)
    b' = b cos(m omega_i) + a sin(m omega_i)

so that q_m . k_n depends on m - n only. Two pairings exist in checkpoints:

    half         (i, i + r/2)   "rotate_half": GPT-NeoX, HF LLaMA/Qwen, GLM-130B
    interleaved  (2i, 2i + 1)   Meta's original LLaMA, ChatGLM2/GLM-4, DeepSeek MLA

They are the same rotation after a fixed permutation of the q/k projection
rows. With a rotary fraction below 1 only the first r = fraction x head_dim
dims rotate; the rest pass through (GPT-NeoX, ChatGLM2, GLM-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .rope_scaling import RopeScaling, scale_frequencies


def inverse_frequencies(
    rotary_dim: int,
    theta: float,
    scaling: RopeScaling | None = None,
    fp16_frequencies: bool = False,
) -> tuple[torch.Tensor, float]:
    """omega_i = theta^(-2i/r), i < r/2, after scaling; returns (omega, cos/sin multiplier).

    ``fp16_frequencies`` rounds omega to float16 as ChatGLM-6B's code does.
    """
    # built on the CPU whatever device the model is being built on (even meta):
    # a few numbers, kept in float32 and moved to the activations' device on use
    exponents = torch.arange(0, rotary_dim, 2, dtype=torch.int64, device="cpu").float() / rotary_dim
    inv_freq = 1.0 / (theta**exponents)
    inv_freq, attention_factor = scale_frequencies(inv_freq, rotary_dim, theta, scaling)
    if fp16_frequencies:
        inv_freq = inv_freq.half().float()
    return inv_freq, attention_factor


@dataclass
class Rotation:
    """cos/sin tables for one forward pass, ``[batch, 1, seq, rotary_dim]``."""

    cos: torch.Tensor
    sin: torch.Tensor
    layout: str

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate the first rotary_dim dims of ``x`` ``[batch, heads, seq, head_dim]``."""
        return apply_rotary(x, self.cos, self.sin, self.layout)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the two halves: the partner of dim i is i + r/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): the partner of dim 2i is 2i + 1."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """x' = x cos + rotate(x) sin on the first cos.shape[-1] dims; the rest pass through."""
    rotary_dim = cos.shape[-1]
    rotate = rotate_half if layout == "half" else rotate_pairs
    if rotary_dim == x.shape[-1]:
        return x * cos + rotate(x) * sin
    rotated, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat((rotated * cos + rotate(rotated) * sin, passed), dim=-1)


class RotaryEmbedding(nn.Module):
    """Builds the cos/sin tables for given position ids (1-D positions)."""

    def __init__(
        self,
        rotary_dim: int,
        *,
        theta: float = 10000.0,
        layout: str = "half",
        scaling: RopeScaling | None = None,
        fp16_frequencies: bool = False,
    ):
        super().__init__()
        if rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even (RoPE rotates pairs), got {rotary_dim}")
        self.rotary_dim = rotary_dim
        self.layout = layout
        # A plain float32 tensor, not a buffer: casting the model to bf16 must not
        # round the frequencies, and a model built on `meta` still has them.
        self.inv_freq, self.attention_factor = inverse_frequencies(rotary_dim, theta, scaling, fp16_frequencies)

    def angles(self, position_ids: torch.Tensor) -> torch.Tensor:
        """m * omega_i in float32, ``[batch, seq, rotary_dim / 2]``."""
        return position_ids[..., None].float() * self.inv_freq.to(position_ids.device)

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> Rotation:
        """Tables for ``position_ids`` ``[batch, seq]``, cast to the activation dtype."""
        freqs = self.angles(position_ids)
        if self.layout == "half":
            emb = torch.cat((freqs, freqs), dim=-1)
        else:
            emb = freqs.repeat_interleave(2, dim=-1)
        cos, sin = emb.cos(), emb.sin()
        if self.attention_factor != 1.0:  # YaRN's temperature; 1 for every other scheme
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        cos, sin = cos.to(dtype)[:, None], sin.to(dtype)[:, None]
        return Rotation(cos, sin, self.layout)

    def range_rotation(self, start: int, length: int, dtype: torch.dtype, device: torch.device) -> Rotation:
        """Tables for positions start, ..., start + length - 1, shared by every batch row."""
        return self(torch.arange(start, start + length, device=device)[None], dtype)

    def extra_repr(self) -> str:
        return f"rotary_dim={self.rotary_dim}, layout={self.layout}"
