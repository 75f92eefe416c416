"""Fast form of ``nn.Linear`` (every projection and the output head) while ``generate`` decodes.

y = x W^T + b. At batch-1 decoding x is one row per step and the product is
a matrix-vector one that reads all of W ([out, in]) once per token: a decode
step of a model whose weights exceed the caches streams every weight from
memory. This CPU's BLAS streams that product faster when W lies in memory
column-major (a contiguous [in, out] matrix seen through ``.t()``) than when it
lies row-major, as every ``nn.Linear`` weight and checkpoint does. Measured
over 16 distinct matrices (so none stays in cache), one thread, fastest of 15,
loaded 2-core EPYC Zen 5, [out, in]: one row 512 x 512 1.71x, 1536 x 512 1.58x,
512 x 1536 1.35x, 32000 x 512 1.96x; two rows 1.17-1.84x; four 0.95-1.19x;
eight 0.91-1.08x.

So inside ``decoding_layout(model)`` (entered by ``generate``) a ``FastLinear``
multiplies a few rows (``DECODING_ROWS``: decode steps; a prefill's many rows
keep the row-major weight, where BLAS gains nothing) by a column-major copy of
its weight. The copy is made on the first decoding call and kept for the next
``generate``, so it is paid once, not per call (a transposing copy of the
model's weights costs about as much as 10 decode steps). The parameter itself
is never touched: ``state_dict``, ``view``, saving, loading and training see an
ordinary row-major weight; deep copies and pickles drop the copy.

Never stale: each copy records the weight's storage pointer and autograd
version counter (bumped by every in-place write: optimizer steps,
``load_state_dict``, ``copy_`` under ``no_grad``), and ``decoding_layout``
drops a copy whose weight moved or changed, or whose sampled entries differ
from the weight's (a write through ``.data``, which bypasses the version
counter). Memory: one more copy of the linear weights while the model lives;
models whose linear weights exceed ``COPY_LIMIT_BYTES`` get no copy at all.

Equal: the same products and sums per output; only the BLAS kernel's order of
summation over ``in`` differs (relative error about in * eps_32).

Measured (``python benchmarks/bench_fast_forms.py --threads 1 --repeats 15 --only Linear``,
gain over the fast path without this form, 2-core EPYC Zen 5 shared with other jobs): small-llama
decode +13.5% (a 16-token generate, prefill included; per decode step, fastest of 160: +43%).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

DECODING_ROWS = 2
"""At most this many rows use the column-major copy (batch-1 and batch-2 decode steps)."""

COPY_LIMIT_BYTES = 2**30
"""Models whose ``nn.Linear`` weights take more than this decode on the row-major weights (no second copy)."""

SAMPLES = 64
"""Entries of each weight compared with its copy when ``decoding_layout`` is entered."""


class FastLinear(nn.Linear):
    reference = nn.Linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "decoding" not in self.__dict__ or x.numel() > DECODING_ROWS * self.in_features:
            return F.linear(x, self.weight, self.bias)
        copy = self.__dict__.get("column_major")
        if copy is None:
            copy = self.__dict__["column_major"] = ColumnMajor(self.weight)
        return F.linear(x, copy.weight, self.bias)

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k not in ("column_major", "decoding")}


class ColumnMajor:
    """A column-major copy of ``weight`` and what it was copied from."""

    def __init__(self, weight: torch.Tensor):
        with torch.no_grad():
            self.weight = weight.t().contiguous().t()
        self.source = source_of(weight)
        flat = torch.linspace(0, weight.numel() - 1, SAMPLES, dtype=torch.float64).long().unique()
        self.rows, self.cols = (flat // weight.shape[1]).to(weight.device), (flat % weight.shape[1]).to(weight.device)

    def matches(self, weight: torch.Tensor) -> bool:
        if self.source != source_of(weight) or self.weight.shape != weight.shape or self.weight.dtype != weight.dtype:
            return False
        with torch.no_grad():  # .data writes leave the version counter alone: compare a spread of entries
            return torch.equal(self.weight[self.rows, self.cols], weight[self.rows, self.cols])


def source_of(weight: torch.Tensor) -> tuple[int, int, torch.device]:
    return weight.data_ptr(), weight._version, weight.device


def trackable(weight: torch.Tensor) -> bool:
    """Whether writes to ``weight`` can be seen (an inference-mode tensor has no version counter)."""
    return not weight.is_meta and not weight.is_inference()


@contextmanager
def decoding_layout(model: nn.Module) -> Iterator[None]:
    """Within the block, every ``FastLinear`` of ``model`` multiplies few rows by a column-major copy."""
    linears = [m for m in model.modules() if isinstance(m, FastLinear) and trackable(m.weight)]
    if sum(m.weight.numel() * m.weight.element_size() for m in linears) > COPY_LIMIT_BYTES:
        linears = []
    for linear in linears:
        copy = linear.__dict__.get("column_major")
        if copy is not None and not copy.matches(linear.weight):
            del linear.__dict__["column_major"]
        linear.__dict__["decoding"] = True
    try:
        yield
    finally:
        for linear in linears:
            linear.__dict__.pop("decoding", None)

