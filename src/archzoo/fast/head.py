"""Fast form of the output head (``CausalLM.lm_head``, an ``nn.Linear``) while ``generate`` decodes.

logits = W_head h. At batch-1 decoding h is one row and the product is a
matrix-vector one that reads all of W_head ([vocab, d], the largest matrix of
a small model) once per token. This CPU's BLAS streams that product about
twice as fast when W_head lies in memory column-major (a contiguous [d, vocab]
matrix seen through ``.t()``) as when it lies row-major, as every
``nn.Linear`` weight and checkpoint does (32000 x 512: 2.4 ms against 4.4 ms).

So ``decoding_layout(model)`` (entered by ``generate``) gives each head a
column-major copy of its weight for the duration of one ``generate`` call,
and drops it after. The parameter itself is never touched: ``state_dict``,
``view``, saving, loading and training see an ordinary row-major weight. The
cost is one more copy of the head in memory while ``generate`` runs, and one
transposing copy per call (tens of ms for 32000 x 512, paid before the prompt).

Equal: the same products and sums per logit; only the BLAS kernel's order of
summation over d differs (relative error about d * eps_32).

Measured (``python benchmarks/bench_fast_forms.py --threads 1 --repeats 15``, gain over
the fast path without this form): small-llama decode step +19.7% (a whole 16-token generate, which also pays the copy: -4.3%).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class FastHead(nn.Linear):
    reference = nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        decoding_weight = self.__dict__.get("decoding_weight")
        if decoding_weight is None:
            return super().forward(x)
        return F.linear(x, decoding_weight, self.bias)


@contextmanager
def decoding_layout(model: nn.Module) -> Iterator[None]:
    """Within the block, every ``FastHead`` of ``model`` multiplies by a column-major copy of its weight."""
    heads = [m for m in model.modules() if isinstance(m, FastHead) and not m.weight.is_meta]
    for head in heads:
        head.__dict__["decoding_weight"] = head.weight.detach().t().contiguous().t()
    try:
        yield
    finally:
        for head in heads:
            head.__dict__.pop("decoding_weight", None)
