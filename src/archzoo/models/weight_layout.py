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

Nothing else changes: parameter names and shapes, ``state_dict`` values, tied
weights (the Parameter object is kept), ``model.to(dtype)`` (it preserves
strides), and saved checkpoints (``save_pretrained`` writes contiguous copies).
"""

from __future__ import annotations

import torch
from torch import nn


def store_column_major(model: nn.Module) -> nn.Module:
    """Re-lay every ``nn.Linear`` weight column-major in place (tensors on ``meta`` are left as they are)."""
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, nn.Linear):
                continue
            weight = module.weight
            if weight.is_meta or is_column_major(weight):
                continue
            # Assigning .data keeps the Parameter object, so a head tied to the
            # embedding stays tied and optimizers holding it stay valid.
            weight.data = weight.data.t().contiguous().t()
    return model


def is_column_major(weight: torch.Tensor) -> bool:
    """True when ``weight.t()`` is contiguous (a 1 x n or n x 1 matrix counts as both layouts)."""
    return weight.dim() == 2 and weight.t().is_contiguous()
