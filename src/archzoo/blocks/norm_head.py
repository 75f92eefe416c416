"""The normalised output head of Baichuan 2 (Yang et al., 2023, "Baichuan 2: Open
Large-scale Language Models", section 2.5 "NormHead").

Each row w_v of the head (one per vocabulary entry) is scaled to unit L2 norm
before the product, so a token's logit depends on the direction of its row and
not on its length:

    logits_v = h . w_v / max(||w_v||_2, eps)        eps = 1e-12, as ``F.normalize``

The paper's reason: the norms of rare tokens' rows drift during training and
destabilise it; normalising them keeps the logits' scale set by ``h`` alone.
The stored weight is the raw ``W`` (a checkpoint's ``lm_head.weight``), so the
parameter count and the checkpoint keys are those of a plain head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class NormHead(nn.Linear):
    """logits = h . normalize(W)^T, rows of W normalised; no bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, **factory):
        if bias:
            raise ValueError("NormHead has no bias (Baichuan 2's head has none)")
        super().__init__(in_features, out_features, bias=False, **factory)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, F.normalize(self.weight, p=2.0, dim=-1, eps=1e-12))
