"""KV cache: per-layer buffers preallocated to ``max_len`` slots.

Decoding token t reuses the keys and values of tokens 0..t-1 instead of
recomputing them. Each layer stores named tensors (``k``, ``v`` for
MHA/GQA/MQA; the latent and the shared RoPE key for absorbed MLA), allocated on
first write with their sequence dimension sized to ``max_len``, then written in
place: no reallocation per step.
"""

from __future__ import annotations

import torch


class LayerCache:
    """One layer's stored tensors, written at slots [start, start + new)."""

    def __init__(self, max_len: int):
        self.max_len = max_len
        self.buffers: dict[str, torch.Tensor] = {}

    def append(self, name: str, x: torch.Tensor, start: int, seq_dim: int = -2) -> torch.Tensor:
        """Write ``x`` at slots [start, start + x.size(seq_dim)); return slots [0, end)."""
        new = x.shape[seq_dim]
        end = start + new
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} slots needed, {self.max_len} allocated (max_len)")
        buffer = self.buffers.get(name)
        if buffer is None:
            shape = list(x.shape)
            shape[seq_dim] = self.max_len
            buffer = self.buffers[name] = x.new_empty(shape)
        buffer.narrow(seq_dim, start, new).copy_(x)
        return buffer.narrow(seq_dim, 0, end)

    def values_per_token(self) -> int:
        """Numbers one token occupies in this layer, per sequence of the batch."""
        return sum(b.numel() // self.max_len // b.shape[0] for b in self.buffers.values())


class KVCache:
    """Caches of every layer plus ``length``: the slots already filled."""

    def __init__(self, n_layers: int, max_len: int):
        self.max_len = max_len
        self.layers = [LayerCache(max_len) for _ in range(n_layers)]
        self.length = 0

    def __getitem__(self, index: int) -> LayerCache:
        return self.layers[index]

    def advance(self, n: int) -> None:
        """Mark ``n`` more slots as filled (the model calls this after all layers wrote)."""
        self.length += n
