"""Column-major storage of the linear weights: same shapes and values, faster CPU decoding.

A linear layer computes y = x W^T with W of shape ``[out, in]`` (the shape
``nn.Linear`` and every checkpoint use). How W's elements lie in memory is a
separate choice. Stored row-major (contiguous), ``F.linear`` asks the BLAS for
x · (W)^T; stored column-major (the memory of a contiguous ``[in, out]``
matrix, seen through ``.t()``), it asks for x · W_t with W_t contiguous.

For prefill and training (many rows of x, a matrix-matrix product) both are
equally fast. For batch-1 decoding (one row of x, a matrix-vector product that
reads every weight once) the column-major form streams memory about twice as
fast on this project's CPUs (torch 2.13, 2 threads, float32): a 32000 x 512
output head takes 3.3 ms against 7.4 ms, and a small LLaMA (d_model 512,
8 layers, vocab 32k) decodes a token in 13.9 ms against 19.9 ms
(``python benchmarks/bench_decode.py``).

The stacked expert weights of an MoE layer (``[E, out, in]``, one such matrix
per expert) are laid out the same way, expert by expert: a decoding token
reads its k experts' matrices in place, and ``grouped_mm`` gets each one as a
contiguous ``[in, out]`` block. One MoE layer (16 experts of width 256, d_model
512, top-2) decodes a token in 0.33 ms against 0.43 ms row-major
(``python benchmarks/bench_moe.py``).

One cost, for a head tied to the embedding: an embedding lookup then reads
each token's row with a stride (about 3 ms for 1024 tokens from a 32000 x 512
table, against 0.05 ms row-major). That is paid once per prefill or training
batch, small beside the batch's matmuls, while the faster head is gained on
every decoded token, so the tied table is column-major too.

One weight stays row-major: MLA's ``kv_b_proj``. Absorbed decoding does not
use it as a linear layer but reads it per head as ``[H, d, r]`` blocks
(``up_weights``), and those batched products run 1.5-2x slower on the
column-major memory (3.6 ms against 1.7 ms per layer and token at
DeepSeek-V3's 128 heads).

Nothing else changes: parameter names and shapes, ``state_dict`` values, tied
weights (the Parameter object is kept), ``model.to(dtype)`` (it preserves
strides), and saved checkpoints (``save_pretrained`` writes contiguous copies).
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks.experts import StackedExperts
from ..blocks.mla import MultiHeadLatentAttention


def store_column_major(model: nn.Module) -> nn.Module:
    """Re-lay every matrix weight column-major in place (tensors on ``meta`` are left as they are).

    Matrix weights: ``nn.Linear.weight`` ``[out, in]`` and ``StackedExperts``'
    ``gate_up_proj`` / ``down_proj`` ``[E, out, in]``, except MLA's ``kv_b_proj``
    (see the module docstring).
    """
    with torch.no_grad():
        for weight in matrix_weights(model):
            if weight.is_meta or is_column_major(weight):
                continue
            # Assigning .data keeps the Parameter object, so a head tied to the
            # embedding stays tied and optimizers holding it stay valid.
            weight.data = weight.data.transpose(-1, -2).contiguous().transpose(-1, -2)
    return model


def matrix_weights(model: nn.Module) -> list[nn.Parameter]:
    """The parameters to store column-major: those that multiply activations as ``x W^T``, each listed once."""
    found: dict[int, nn.Parameter] = {}
    read_per_head: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            found[id(module.weight)] = module.weight
        elif isinstance(module, StackedExperts):
            found[id(module.gate_up_proj)] = module.gate_up_proj
            found[id(module.down_proj)] = module.down_proj
        elif isinstance(module, MultiHeadLatentAttention):
            read_per_head.add(id(module.kv_b_proj.weight))
    return [weight for key, weight in found.items() if key not in read_per_head]


def is_column_major(weight: torch.Tensor) -> bool:
    """True when each ``[out, in]`` matrix of ``weight`` lies in memory as a contiguous ``[in, out]`` one
    (a 1 x n or n x 1 matrix counts as both layouts)."""
    return weight.dim() >= 2 and weight.transpose(-1, -2).is_contiguous()
