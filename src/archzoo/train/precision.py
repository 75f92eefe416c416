"""Numeric precision of a training step (``TrainSettings.precision``).

    fp32        weights, gradients, AdamW moments and activations in float32.
    bf16        mixed precision (Micikevicius et al. 2018, with bfloat16 instead of fp16, so no loss
                scaling): the forward pass and the loss run under ``torch.autocast``, which computes
                matmuls in bfloat16 from cached bfloat16 copies of the float32 weights; the weights
                ("master" copy), their gradients and the AdamW moments stay float32.
    bf16-pure   the model itself is bfloat16: weights, gradients, AdamW moments and activations.
                Half the memory of fp32 state, but updates smaller than a weight's ulp
                (2^-8 relative) are lost, so it trains less precisely.
"""

from __future__ import annotations

import contextlib

import torch


def model_dtype(precision: str) -> torch.dtype:
    """The dtype the model's parameters are kept in."""
    return torch.bfloat16 if precision == "bf16-pure" else torch.float32


def forward_context(precision: str, device: torch.device | str = "cpu") -> contextlib.AbstractContextManager:
    """Autocast to bfloat16 for ``bf16``; nothing otherwise."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
