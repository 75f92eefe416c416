"""LoRA: a frozen linear layer plus a trainable low-rank update (Hu et al. 2021, "LoRA").

    y = W x + b + (alpha / r) * B A dropout(x)

W ``[out, in]`` and b stay frozen; A ``[r, in]`` and B ``[out, r]`` train, with
r much smaller than in and out. A starts Kaiming-uniform (as ``nn.Linear`` and
PEFT initialise it) and B at zero, so the adapted layer starts as the base layer
exactly. rsLoRA (Kalajdzievski 2023) scales by alpha / sqrt(r) instead.

Merging folds the update into the weight, W' = W + (alpha / r) B A, so the
layer costs nothing extra at inference; unmerging subtracts it again.

``LoRALinear`` is an ``nn.Linear`` (same ``weight`` and ``bias`` Parameters, so
a state dict keeps the base names) with two more linear layers ``lora_A`` and
``lora_B``: ``q_proj.lora_A.weight`` is PEFT's name too.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _replaying_meta_init() -> bool:
    """True inside ``train/distributed/init_by_parts.Replay``, which turns meta draws into real ones:
    the reset must then draw here, in the order a CPU build draws, not later."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    return getattr(_get_current_dispatch_mode(), "replays_meta_init", False)


class LoRALinear(nn.Linear):
    """``base`` (its own weight and bias, frozen) plus ``lora_B(lora_A(dropout(x))) * scaling``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, *, rslora: bool = False):
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        for param in (self.weight, self.bias):
            if param is not None:
                param.requires_grad_(False)
        self.rank, self.alpha, self.rslora = rank, float(alpha), rslora
        self.scaling = self.alpha / (math.sqrt(rank) if rslora else rank)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Linear(self.in_features, rank, bias=False, **factory)
        self.lora_B = nn.Linear(rank, self.out_features, bias=False, **factory)
        self.lora_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.merged = False
        if not base.weight.is_meta or _replaying_meta_init():
            self.reset_lora()

    def reset_lora(self) -> None:
        """A Kaiming-uniform (``nn.Linear``'s and PEFT's default), B = 0: the update starts at zero."""
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def delta_weight(self) -> torch.Tensor:
        """(alpha / r) B A, shaped like ``weight``."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.merged:
            return y
        return y + self.lora_B(self.lora_A(self.lora_dropout(x))) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + (alpha / r) B A; the forward then skips the adapter."""
        if not self.merged:
            self.weight.add_(self.delta_weight().to(self.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """W <- W - (alpha / r) B A: the base weight again (up to one rounding per element)."""
        if self.merged:
            self.weight.sub_(self.delta_weight().to(self.weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"
