"""Position-wise feed-forward blocks.

Plain GeLU MLP (GPT-2, BLOOM, ChatGLM-6B):

    MLP(x) = W_down GeLU(W_up x + b_up) + b_down

GeLU(x) = x * Phi(x) (Hendrycks & Gimpel 2016); the ``tanh`` approximation is
0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

Gated MLPs (Shazeer 2020, "GLU Variants Improve Transformer"):

    SwiGLU(x) = W_down (SiLU(W_gate x) * W_up x)      LLaMA, Qwen, DeepSeek, ChatGLM2
    GeGLU(x)  = W_down (GeLU(W_gate x) * W_up x)      GLM-130B, Gemma

A gated MLP of inner width h has 3 d h weights against the plain MLP's 2 d h,
so h = 2/3 x 4d keeps the parameter count of a 4d plain MLP (LLaMA's rule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeluMLP(nn.Module):
    """W_down GeLU(W_up x)."""

    def __init__(self, d_model: int, hidden: int, *, bias: bool = False, gelu_approximate: str = "none"):
        super().__init__()
        self.up_proj = nn.Linear(d_model, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, d_model, bias=bias)
        self.approximate = gelu_approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.gelu(self.up_proj(x), approximate=self.approximate))


class GatedMLP(nn.Module):
    """W_down (act(W_gate x) * W_up x); ``act`` is SiLU (SwiGLU) or GeLU (GeGLU)."""

    def __init__(self, d_model: int, hidden: int, *, bias: bool = False, gelu_approximate: str = "none"):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, hidden, bias=bias)
        self.up_proj = nn.Linear(d_model, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, d_model, bias=bias)
        self.approximate = gelu_approximate

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class SwiGLU(GatedMLP):
    """W_down (SiLU(W_gate x) * W_up x), SiLU(x) = x sigmoid(x)."""


class GeGLU(GatedMLP):
    """W_down (GeLU(W_gate x) * W_up x)."""

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


MLP_KINDS = {"gelu": GeluMLP, "swiglu": SwiGLU, "geglu": GeGLU}
"""``[mlp] kind`` -> class; every class takes ``(d_model, hidden, *, bias, gelu_approximate)``."""
