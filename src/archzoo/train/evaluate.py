"""Loss and perplexity of a model on a token stream.

    loss = -1/N sum_t log p(x_{t+1} | x_{<=t}),    perplexity = exp(loss)

over consecutive non-overlapping windows of ``seq_len + 1`` tokens (each window
predicts its last ``seq_len`` tokens from the ones before them, within the window),
so every token after a window's first is scored once. The tail shorter than a
window is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from .data import fixed_windows


@dataclass(frozen=True)
class EvalResult:
    loss: float  # nats per token
    perplexity: float
    tokens: int  # predicted tokens


@torch.no_grad()
def evaluate(model: nn.Module, ids: torch.Tensor, *, seq_len: int, batch: int = 8, progress: bool = True) -> EvalResult:
    """Mean next-token cross-entropy of ``model`` over the 1-D stream ``ids``."""
    from tqdm import tqdm

    if ids.numel() < seq_len + 1:
        raise InputError(f"the text has {ids.numel()} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}")
    windows = fixed_windows(ids, seq_len)
    model.eval()
    total = 0.0
    chunks = windows.split(batch)
    for chunk in tqdm(chunks, desc="eval", unit="batch", disable=not progress, dynamic_ncols=True):
        total += model(chunk[:, :-1], targets=chunk[:, 1:]).item() * chunk[:, 1:].numel()
    count = windows.shape[0] * seq_len
    loss = total / count
    return EvalResult(loss, math.exp(min(loss, 700.0)), count)
