"""Routed experts with stacked weights and grouped dispatch.

E SwiGLU experts, y_e(x) = W_down,e (SiLU(W_gate,e x) * W_up,e x), are held as
two stacked tensors laid out like ``nn.Linear.weight``: ``gate_up_proj``
``[E, 2h, d]`` (rows 0..h-1 are W_gate,e, rows h..2h-1 W_up,e: one matmul for
both, as transformers 5 keeps them in memory) and ``down_proj`` ``[E, d, h]``.
Checkpoints store ``experts.{e}.gate_proj.weight`` etc.: stacked and fused on
load, split and unstacked on save. Building DeepSeek-V3 on ``meta`` is then 2
tensors per layer, not 3 x 256 modules.

A token x with chosen experts i_1..i_k and weights w_1..w_k gets

    y = sum_j w_j y_{i_j}(x)

Grouped dispatch, without a loop over tokens: flatten the N x k (token, expert)
pairs, sort them by expert (stable), gather the token rows into that order so
that each expert's rows are one contiguous block, run each expert once on its
block, and add each result row, times its weight w_j, into its token's output
row. Gathering rows by token (``index_select``) and adding rows back by token
(``index_add``) are each other's gradient, so autograd needs nothing custom.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Dispatch:
    """(token, expert) pairs sorted by expert.

    Pair p = t * k + j is token t's j-th choice. ``order`` lists the pairs
    grouped by expert (stable); ``token`` is the token of each sorted pair;
    ``counts`` the pairs of each expert.
    """

    def __init__(self, indices: torch.Tensor, n_experts: int):
        flat = indices.reshape(-1)
        self.order = flat.argsort(stable=True)
        self.token = self.order // indices.shape[-1]
        self.counts = torch.bincount(flat, minlength=n_experts)


def swiglu(gate_up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up for ``[..., 2h]`` = [gate | up]."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


class StackedExperts(nn.Module):
    """``gate_up_proj`` ``[E, 2 hidden, d]`` (gate rows, then up rows) and ``down_proj`` ``[E, d, hidden]``."""

    def __init__(self, d_model: int, hidden: int, n_experts: int):
        super().__init__()
        self.n_experts, self.d_model, self.hidden = n_experts, d_model, hidden
        self.gate_up_proj = nn.Parameter(torch.empty(n_experts, 2 * hidden, d_model))
        self.down_proj = nn.Parameter(torch.empty(n_experts, d_model, hidden))

    def init_weights(self, std: float) -> None:
        for weight in (self.gate_up_proj, self.down_proj):
            nn.init.normal_(weight, 0.0, std)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert e alone on rows ``x``."""
        return F.linear(swiglu(F.linear(x, self.gate_up_proj[e])), self.down_proj[e])

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, d]``, ``indices``/``weights`` ``[N, k]`` -> ``[N, d]``."""
        dispatch = Dispatch(indices, self.n_experts)
        blocks = x.index_select(0, dispatch.token).split(dispatch.counts.tolist())  # expert e's rows: blocks[e]
        out_rows = torch.cat([self.expert(e, rows) for e, rows in enumerate(blocks)])
        row_weights = weights.reshape(-1).index_select(0, dispatch.order).to(x.dtype)
        return x.new_zeros(x.shape).index_add(0, dispatch.token, out_rows * row_weights[:, None])  # sum_j w_j y_ij

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, d_model={self.d_model}, hidden={self.hidden}"
