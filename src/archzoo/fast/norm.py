"""Fast form of ``blocks.norm.RMSNorm``: y = x / sqrt(mean(x^2) + eps) * g.

mean(x^2) + eps is formed as eps + ||x||^2 / d: one norm kernel and one fused
multiply-add (``addcmul``, whose 1/d is a kernel argument), where square, mean
and add take three kernels plus two that turn the Python numbers 1/d and eps
into tensors. Decoding a tiny model is bound by such per-kernel costs.

Equal: ||x||^2 / d is mean(x^2) computed as a sum then a scaling, in float32
(as the reference), so it differs only by the rounding of the two orders of
summation (about d * eps_32 relative, far below 1e-6 for d <= 8192).

Measured (``python benchmarks/bench_fast_forms.py --threads 1 --repeats 15``, gain over
the fast path without this form): llama-tiny decode +28.5%, deepseek-tiny decode +19.0%.
"""

from __future__ import annotations

import functools

import torch

from ..blocks.norm import RMSNorm


class FastRMSNorm(RMSNorm):
    reference = RMSNorm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == self.weight.dtype == torch.float32:  # the common case: no casts
            return rms_normalize(x, self.eps) * self.weight
        normed = rms_normalize(x.to(torch.promote_types(x.dtype, torch.float32)), self.eps)
        return self.weight * normed.to(x.dtype)


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(eps + ||x||^2 / d) over the last dimension, without the gain."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    mean_square_plus_eps = torch.addcmul(scalar(eps, x.dtype, x.device), norm, norm, value=1 / x.shape[-1])
    return x * mean_square_plus_eps.rsqrt_()


@functools.lru_cache(maxsize=64)
def scalar(value: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A 0-dim tensor holding ``value``, made once per (value, dtype, device).

    Made outside inference mode, so a model that decoded can still be trained.
    """
    with torch.inference_mode(False):
        return torch.tensor(value, dtype=dtype, device=device)
