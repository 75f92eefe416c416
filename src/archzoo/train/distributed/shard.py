"""Fully sharded data parallelism with PyTorch's FSDP2 (``torch.distributed.fsdp.fully_shard``).

Each decoder layer is one FSDP unit, then the root (embedding, final norm, head and
anything else left) is another. Every parameter of a unit is split along its first
dimension into ``world`` pieces (``DTensor`` with ``Shard(0)``); a process keeps
its piece, and with it that piece's gradient and AdamW moments (ZeRO stage 3,
Rajbhandari et al. 2020). Before a unit computes, its parameters are all-gathered
whole; after its forward (and again after its backward) they are freed; its
gradients are reduce-scattered so every process ends with its piece of the
gradient averaged over the processes. MoE expert stacks (``[E, 2h, d]``) and MLA's
projections are parameters like any other: split along dimension 0.

``--precision bf16`` becomes FSDP2's ``MixedPrecisionPolicy``: the gathered
parameters are bfloat16 (so is the compute), the gradients are reduced in float32
and the sharded master weights and AdamW state stay float32. ``bf16-pure`` shards
bfloat16 parameters as they are.
"""

from __future__ import annotations

import torch
from torch import nn


def mixed_precision(precision: str):
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if precision == "bf16":
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard_model(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """``fully_shard`` every decoder layer, then the root; returns the model (now an ``FSDPModule``)."""
    from torch.distributed.fsdp import fully_shard

    policy = mixed_precision(precision)
    for layer in model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)
