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

import functools
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
    signed_sin: torch.Tensor | None = None  # derived from sin (see below); passed in when already known

    def __post_init__(self):
        if self.signed_sin is not None:
            return
        # rotate(x) = swap(x) * sign, with swap a pure permutation (``swap_partners``)
        # and sign = -1 on the first member of each pair. Folding the sign into sin
        # once per forward, not in every layer's q and k, leaves three ops per rotation:
        #     x' = x cos + swap(x) (sign sin)
        sign = torch.ones(self.cos.shape[-1], dtype=self.sin.dtype, device=self.sin.device)
        sign[first_of_each_pair(self.cos.shape[-1], self.layout)] = -1
        self.signed_sin = self.sin * sign

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate the first rotary_dim dims of ``x`` ``[batch, heads, seq, head_dim]``.

        The same numbers as ``apply_rotary(x, cos, sin, layout)`` (tested), in fewer ops."""
        rotary_dim = self.cos.shape[-1]
        partial = rotary_dim < x.shape[-1]
        part = x[..., :rotary_dim] if partial else x
        rotated = torch.addcmul(part * self.cos, swap_partners(part, self.layout), self.signed_sin)
        return torch.cat((rotated, x[..., rotary_dim:]), dim=-1) if partial else rotated


def first_of_each_pair(rotary_dim: int, layout: str) -> slice:
    """The dims whose rotated value is a cos - b sin: the first half, or the even dims."""
    return slice(0, rotary_dim // 2) if layout == "half" else slice(0, rotary_dim, 2)


def swap_partners(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Exchange each rotated pair's members: (x1, x2) -> (x2, x1) over the halves, or (x0, x1) -> (x1, x0)."""
    if layout == "half":
        return x.roll(x.shape[-1] // 2, dims=-1)
    # one gather by a cached index (1, 0, 3, 2, ...): a kernel fewer than unflatten-flip-flatten
    return x.index_select(-1, pair_partners(x.shape[-1], x.device))


@functools.lru_cache(maxsize=16)
def pair_partners(rotary_dim: int, device: torch.device) -> torch.Tensor:
    """Index (1, 0, 3, 2, ..., r-1, r-2): dim 2i's partner is 2i + 1 and back.

    Made once per width and device, outside inference mode (it outlives the call).
    """
    with torch.inference_mode(False):
        return torch.arange(rotary_dim, device=device).view(-1, 2).flip(-1).flatten()


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
        self.tables: dict[tuple[torch.device, torch.dtype], Rotation] = {}  # see range_rotation

    def frequencies(self, device: torch.device) -> torch.Tensor:
        """omega_i on ``device`` (moved once, then reused)."""
        if self.inv_freq.device != device:
            with torch.inference_mode(False):  # kept across calls: must stay usable by autograd
                self.inv_freq = self.inv_freq.to(device)
        return self.inv_freq

    def angles(self, position_ids: torch.Tensor) -> torch.Tensor:
        """m * omega_i in float32, ``[batch, seq, rotary_dim / 2]``."""
        return position_ids[..., None].float() * self.frequencies(position_ids.device)

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
        """Tables for positions start, ..., start + length - 1, shared by every batch row.

        The common case (no padding, 1-D positions) needs no per-step
        trigonometry: these are slices (views) of tables for positions
        0..n-1 that ``forward`` computed once, with the same numbers, and
        that are recomputed twice as long when a position reaches n.
        """
        end = start + length
        table = self.tables.get((device, dtype))
        if table is None or table.cos.shape[-2] < end:
            size = max(end, 2 * table.cos.shape[-2] if table is not None else 256)
            # kept across calls, so made as normal tensors even when first asked for under
            # inference mode (generate): training may use them later
            with torch.inference_mode(False):
                table = self.tables[(device, dtype)] = self(torch.arange(size, device=device)[None], dtype)
        cos, sin, signed_sin = (t.narrow(-2, start, length) for t in (table.cos, table.sin, table.signed_sin))
        return Rotation(cos, sin, self.layout, signed_sin)

    def extra_repr(self) -> str:
        return f"rotary_dim={self.rotary_dim}, layout={self.layout}"
