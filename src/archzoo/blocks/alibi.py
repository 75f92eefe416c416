"""ALiBi: attention with linear biases (Press et al. 2022, "Train Short, Test Long").

No position embedding; each head h adds a fixed penalty linear in distance:

    score(q, k) = q . k / sqrt(d) + m_h * (k - q)          (k <= q, so the bias is <= 0)

Slopes are a geometric sequence. For n heads a power of two,
m_h = 2^(-8h/n), h = 1..n (for 8 heads: 1/2, 1/4, ..., 1/256). For other n,
take the n' = 2^floor(log2 n) slopes of n', then the first n - n' of the
odd-indexed slopes of 2n' (the paper's rule, used by BLOOM and Baichuan-13B).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The per-head slopes m_h, ``[n_heads]`` float32."""

    def power_of_two_slopes(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (h + 1) for h in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest < n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32, device="cpu")


class Alibi(nn.Module):
    """Holds the slopes; ``bias`` gives the additive score bias for query/key slots."""

    def __init__(self, n_heads: int):
        super().__init__()
        # plain float32 tensor (not a buffer): see RotaryEmbedding
        self.slopes = alibi_slopes(n_heads)

    def bias(self, q_len: int, kv_len: int, past: int, device: torch.device | None = None) -> torch.Tensor:
        """m_h * (k - q) for query slots past..past+q_len-1, key slots 0..kv_len-1: ``[heads, q, kv]``.

        Distances are between cache slots. Left padding shifts every real
        token of a row by the same amount, so the distances between real
        tokens (all that the softmax sees) are unchanged.
        """
        q_pos = torch.arange(past, past + q_len, device=device)
        k_pos = torch.arange(kv_len, device=device)
        distance = (k_pos[None, :] - q_pos[:, None]).float()
        return self.slopes.to(distance.device)[:, None, None] * distance
