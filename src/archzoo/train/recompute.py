"""Activation checkpointing per decoder layer (Chen et al. 2016, "Training Deep Nets with Sublinear
Memory Cost").

A checkpointed layer keeps only its input for the backward pass and runs its
forward a second time there to rebuild what the gradient needs: activation
memory falls from the sum over layers to the layer inputs plus one layer's
activations, for about one extra forward pass of compute (~33% more per step).
Non-reentrant checkpointing (``use_reentrant=False``) is used: it works when the
layer's inputs need no gradient (a frozen base under LoRA) and with keyword
arguments and non-tensor inputs (the attention context).
"""

from __future__ import annotations

from torch import nn


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Turn activation checkpointing of every decoder layer on or off (in training forwards only)."""
    if not hasattr(model, "activation_checkpointing"):
        raise TypeError(f"{type(model).__name__} has no decoder layers to checkpoint")
    model.activation_checkpointing = enabled
    return model
