"""Stacked MoE experts with quantized weights (``blocks/quant.py``'s layouts, one per expert).

The same experts as ``blocks/experts.py``,

    y_e(x) = W'_down,e (SiLU(W'_gate,e x) * W'_up,e x)

with ``gate_up_proj`` ``[E, 2h, d]`` and ``down_proj`` ``[E, d, h]`` each a
``QuantizedWeight``: every expert's rows are quantized on their own (int8 per
output row, int4 per group of its input dims), exactly as if each expert were
its own linear layer. Dispatch is the experts' loop path: an expert's matrix
is dequantized only when some token chose it (``weight[e]``), so a decoding
token dequantizes its k experts, not all E.
"""

from __future__ import annotations

from torch import nn

from .experts import StackedExperts
from .quant import QuantizedWeight


class QuantStackedExperts(StackedExperts):
    """``StackedExperts`` whose ``gate_up_proj`` / ``down_proj`` are ``QuantizedWeight`` modules."""

    def __init__(self, experts: StackedExperts, mode: str, group_size: int | None, *, symmetric: bool = False):
        nn.Module.__init__(self)
        self.n_experts, self.d_model, self.hidden = experts.n_experts, experts.d_model, experts.hidden
        self.gate_up_proj = QuantizedWeight.from_weight(experts.gate_up_proj.detach(), mode, group_size, symmetric=symmetric)
        self.down_proj = QuantizedWeight.from_weight(experts.down_proj.detach(), mode, group_size, symmetric=symmetric)
        self.use_grouped_mm = False  # grouped_mm takes float weights; the loop dequantizes chosen experts only

    def init_weights(self, std: float) -> None:
        raise TypeError("quantized experts are converted from trained weights, not initialised")
