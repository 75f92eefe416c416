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

Dispatch without a loop over tokens: flatten the N x k (token, expert) pairs,
sort them by expert (stable), gather the token rows into that order so each
expert's rows are contiguous, run one matmul per expert over its block (one
``grouped_mm`` call for all experts where torch has it, else a loop over the
experts), and add each result row, times its weight w_j, into its token's
output row. The weight is applied to the expert's hidden activation instead,
before the down projection (W_down(w h) = w W_down h; half as wide here).

Gathering rows by token (``index_select``) and adding rows back by token
(``index_add``) are each other's gradient, so autograd needs nothing custom.
A single token (decoding) skips the sort and runs its k experts directly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..torch_version import TORCH_VERSION

_GROUPED_MM = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)


def grouped_mm_supported(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``grouped_mm`` runs (and is right) here for this device and dtype.

    Both widths of ``weight`` ``[E, out, in]`` must give 16-byte row strides.
    CPU: float32 and bfloat16, checked against a loop in tests (torch <= 2.10
    also needs 16-byte aligned data, which mmap'ed checkpoints do not
    guarantee). CUDA: bfloat16 on compute capability >= 8.0.
    """
    if _GROUPED_MM is None or x.dtype != weight.dtype:
        return False
    if any(size * x.element_size() % 16 for size in weight.shape[1:]):
        return False  # every row stride must be a multiple of 16 bytes
    if x.device.type == "cpu":
        aligned = x.data_ptr() % 16 == 0 and weight.data_ptr() % 16 == 0
        return x.dtype in (torch.float32, torch.bfloat16) and (TORCH_VERSION >= (2, 11) or aligned)
    if x.device.type == "cuda":
        return x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device) >= (8, 0)
    return False


class Dispatch:
    """(token, expert) pairs sorted by expert: built once, used by every projection.

    Pair p = t * k + j is token t's j-th choice. ``order`` lists the pairs
    grouped by expert (stable); ``token`` is the token of each sorted pair.
    """

    def __init__(self, indices: torch.Tensor, n_experts: int):
        self.top_k = indices.shape[-1]
        flat = indices.reshape(-1)
        self.order = flat.argsort(stable=True)
        self.token = self.order // self.top_k
        self.counts = torch.bincount(flat, minlength=n_experts)  # rows per expert
        self.offsets = self.counts.cumsum(0).to(torch.int32)  # end row of each expert's block
        self._bounds: list[int] | None = None

    def bounds(self) -> list[int]:
        """Python row bounds [0, end_0, end_1, ...] (one host sync, only for the loop path)."""
        if self._bounds is None:
            self._bounds = [0, *self.offsets.tolist()]
        return self._bounds


def grouped_linear(x: torch.Tensor, weight: torch.Tensor, dispatch: Dispatch, use_grouped_mm: bool) -> torch.Tensor:
    """Rows of expert e (block e of ``x``, sorted) times ``weight[e].T``; ``weight`` is ``[E, out, in]``."""
    if use_grouped_mm:
        return _GROUPED_MM(x, weight.transpose(1, 2), offs=dispatch.offsets)
    bounds = dispatch.bounds()
    blocks = [
        F.linear(x[start:end], weight[expert])
        for expert, (start, end) in enumerate(zip(bounds, bounds[1:]))
        if end > start
    ]
    return torch.cat(blocks) if len(blocks) > 1 else blocks[0]


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
        self.use_grouped_mm: bool | None = None  # None: decide per call (grouped_mm_supported)

    def init_weights(self, std: float) -> None:
        for weight in (self.gate_up_proj, self.down_proj):
            nn.init.normal_(weight, 0.0, std)

    def expert(self, e: int, x: torch.Tensor) -> torch.Tensor:
        """Expert e alone on rows ``x``."""
        return F.linear(swiglu(F.linear(x, self.gate_up_proj[e])), self.down_proj[e])

    def forward(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, d]``, ``indices``/``weights`` ``[N, k]`` -> ``[N, d]``."""
        if x.shape[0] == 1:  # one token (decoding): no sorting, its k experts directly
            return self.one_token(x, indices, weights)
        dispatch = Dispatch(indices, self.n_experts)
        grouped = self.use_grouped_mm
        if grouped is None:
            grouped = grouped_mm_supported(x, self.gate_up_proj)
        rows = x.index_select(0, dispatch.token)  # each token once per choice, in expert order
        row_weights = weights.reshape(-1).index_select(0, dispatch.order).to(x.dtype)
        hidden = swiglu(grouped_linear(rows, self.gate_up_proj, dispatch, grouped)) * row_weights[:, None]
        out_rows = grouped_linear(hidden, self.down_proj, dispatch, grouped)
        return x.new_zeros(x.shape).index_add(0, dispatch.token, out_rows)  # y_t = sum_j w_j y_{i_j}(x_t)

    def one_token(self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        outputs = torch.cat([self.expert(e, x) for e in indices[0].tolist()])  # [k, d]
        return weights.to(outputs.dtype) @ outputs

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, d_model={self.d_model}, hidden={self.hidden}"
