"""Routed experts with stacked weights and grouped dispatch.

E SwiGLU experts, y_e(x) = W_down,e (SiLU(W_gate,e x) * W_up,e x), are held as
three stacked tensors, one per projection, each ``[E, out, in]`` like
``nn.Linear.weight`` (checkpoints store ``experts.{e}.gate_proj.weight``: stack
on load, unstack on save). Building DeepSeek-V3 on ``meta`` is then 3 tensors
per layer, not 3 x 256 modules.

A token x with chosen experts i_1..i_k and weights w_1..w_k gets

    y = sum_j w_j y_{i_j}(x)

Dispatch without a loop over tokens: flatten the N x k (token, expert) pairs,
sort them by expert (stable), gather the token rows into that order so each
expert's rows are contiguous, run one matmul per expert over its block (one
``grouped_mm`` call for all experts where torch has it), scale by w, and
``index_add`` the rows back onto their tokens.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_GROUPED_MM = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


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
        return x.dtype in (torch.float32, torch.bfloat16) and (_TORCH_VERSION >= (2, 11) or aligned)
    if x.device.type == "cuda":
        return x.dtype == torch.bfloat16 and torch.cuda.get_device_capability(x.device) >= (8, 0)
    return False


class Dispatch:
    """(token, expert) pairs sorted by expert: built once, used by every projection."""

    def __init__(self, indices: torch.Tensor, n_experts: int):
        top_k = indices.shape[-1]
        flat = indices.reshape(-1)
        self.order = flat.argsort(stable=True)  # pair positions, grouped by expert
        self.token = self.order // top_k  # the token of each sorted pair
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
    if not blocks:
        return x.new_zeros(0, weight.shape[1])
    return torch.cat(blocks) if len(blocks) > 1 else blocks[0]


class StackedExperts(nn.Module):
    """``gate_proj``, ``up_proj`` ``[E, hidden, d]`` and ``down_proj`` ``[E, d, hidden]``."""

    def __init__(self, d_model: int, hidden: int, n_experts: int):
        super().__init__()
        self.n_experts, self.d_model, self.hidden = n_experts, d_model, hidden
        self.gate_proj = nn.Parameter(torch.empty(n_experts, hidden, d_model))
        self.up_proj = nn.Parameter(torch.empty(n_experts, hidden, d_model))
        self.down_proj = nn.Parameter(torch.empty(n_experts, d_model, hidden))
        self.use_grouped_mm: bool | None = None  # None: decide per call (grouped_mm_supported)

    def init_weights(self, std: float) -> None:
        for weight in (self.gate_proj, self.up_proj, self.down_proj):
            nn.init.normal_(weight, 0.0, std)

    def forward(
        self, x: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``[N, d]``, ``indices``/``weights`` ``[N, k]`` -> (``[N, d]``, tokens per expert ``[E]``)."""
        dispatch = Dispatch(indices, self.n_experts)
        rows = x.index_select(0, dispatch.token)
        grouped = self.use_grouped_mm
        if grouped is None:
            grouped = grouped_mm_supported(rows, self.gate_proj) and rows.shape[0] > self.n_experts
        hidden = F.silu(grouped_linear(rows, self.gate_proj, dispatch, grouped))
        hidden = hidden * grouped_linear(rows, self.up_proj, dispatch, grouped)
        out_rows = grouped_linear(hidden, self.down_proj, dispatch, grouped)
        pair_weights = weights.reshape(-1).index_select(0, dispatch.order)
        out_rows = (out_rows * pair_weights[:, None]).to(x.dtype)
        out = x.new_zeros(x.shape).index_add_(0, dispatch.token, out_rows)
        return out, dispatch.counts

    def per_expert_params(self) -> int:
        return 3 * self.d_model * self.hidden

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, d_model={self.d_model}, hidden={self.hidden}"


def expert_param_count(d_model: int, hidden: int) -> int:
    """Parameters of one SwiGLU expert: gate, up and down, no biases."""
    return 3 * math.prod((d_model, hidden))
