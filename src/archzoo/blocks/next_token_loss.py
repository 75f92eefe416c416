"""Next-token cross-entropy from the final hidden states: the output head and the loss, as one block.

    z_i = W h_i                                  (the head: logits over the vocabulary, [V])
    L   = -1/N sum_{i: y_i != ignore} log softmax(z_i)[y_i]
        =  1/N sum_i ( logsumexp(z_i) - z_i[y_i] )

N counts the positions whose target is not ``IGNORE_INDEX`` (-100, as ``F.cross_entropy``
and Hugging Face label masks use). The loss is computed in float32 whatever the model's
dtype, as ``archzoo.train`` has always done.

Why a block and not ``cross_entropy(model(x), y)``: the logits ``[B, T, V]`` are a training
step's largest tensor (4 x 128 tokens x 32k vocabulary = 65 MB in float32, more than the
rest of a small model's activations), and the loss needs only one number per position from
them. This reference forms them whole; the fast form (``fast/next_token_loss.py``) never
does. ``CausalLM.forward(..., targets=y)`` calls it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100
"""A target of this value contributes nothing to the loss nor to N."""


class NextTokenLoss(nn.Module):
    """Mean cross-entropy of ``head(hidden)`` against ``targets``; holds no parameter (the head is the model's)."""

    def forward(self, hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor) -> torch.Tensor:
        logits = head(hidden)
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.flatten(), ignore_index=IGNORE_INDEX)
