"""GLM's 2D rotary embedding (ChatGLM-6B's ``position_encoding_2d``).

Each query/key head of width d is cut in two halves of d/2 dims. The first
half is rotated by the position p, the second by the block position b
(GLM blank infilling, ``glm/blank_infilling.py``):

    x = [x_pos | x_blk]        x_pos, x_blk of width r = d / 2
    x' = [R(p) x_pos | R(b) x_blk]

R is the half-split ("rotate_half", NeoX) RoPE over r dims *inside each half*:
pair (i, i + r/2), angle m * omega_i, omega_i = theta^(-2i / r), i < r/2:

    out_i       = x_i cos - x_{i+r/2} sin
    out_{i+r/2} = x_{i+r/2} cos + x_i sin

ChatGLM-6B's code rounds omega to float16 (``fp16_frequencies``), even in a
float32 model; exact parity with that code needs the rounding. Block position
0 (all of Part A, and every token when only 1-D ids are given) leaves the
second half unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .rope import RotaryEmbedding, Rotation


@dataclass
class Rotation2D:
    """Two half-split rotations, one per half of each head."""

    position: Rotation
    block: Rotation

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``[batch, heads, seq, head_dim]``: first half by position, second by block."""
        first, second = x.chunk(2, dim=-1)
        return torch.cat((self.position.apply(first), self.block.apply(second)), dim=-1)


class GLM2DRotaryEmbedding(nn.Module):
    """cos/sin tables for ``[batch, 2, seq]`` (position, block position) ids."""

    def __init__(self, head_dim: int, *, theta: float = 10000.0, fp16_frequencies: bool = False):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"head_dim must be a multiple of 4 (two halves rotated in pairs), got {head_dim}")
        self.head_dim = head_dim
        self.half_dim = head_dim // 2
        # one half-split RoPE of half the head width, applied once with each id row
        self.rope = RotaryEmbedding(self.half_dim, theta=theta, layout="half", fp16_frequencies=fp16_frequencies)

    @property
    def inv_freq(self) -> torch.Tensor:
        """omega_i of each half (float32; fp16-rounded values when ``fp16_frequencies``)."""
        return self.rope.inv_freq

    def forward(self, position_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> Rotation2D:
        """``position_ids`` ``[batch, 2, seq]`` (row 0 position, row 1 block), or
        ``[batch, seq]`` positions with block position 0."""
        if position_ids.dim() == 2:
            positions, blocks = position_ids, torch.zeros_like(position_ids)
        elif position_ids.dim() == 3 and position_ids.shape[1] == 2:
            positions, blocks = position_ids[:, 0], position_ids[:, 1]
        else:
            raise ValueError(
                f"position_ids for glm2d must be [batch, 2, seq] or [batch, seq], got {list(position_ids.shape)}"
            )
        return Rotation2D(self.rope(positions, dtype), self.rope(blocks, dtype))

    def range_rotation(self, start: int, length: int, dtype: torch.dtype, device: torch.device) -> Rotation2D:
        """Positions start, ..., start + length - 1 with block position 0 (table slices)."""
        block_zero = self.rope.range_rotation(0, 1, dtype, device)  # broadcasts over the sequence
        return Rotation2D(self.rope.range_rotation(start, length, dtype, device), block_zero)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim} (two halves of {self.half_dim})"
