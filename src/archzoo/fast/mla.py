"""Fast form of absorbed ``blocks.mla.MultiHeadLatentAttention`` (naive mode is unchanged).

Two changes to ``attend_absorbed``:

* per-head products as one ``bmm`` over the heads with the batch and sequence
  rows stacked (``per_head_matmul``), instead of ``einsum``, whose broadcast
  runs a product per (batch, head);
* the value passed to SDPA is the whole cached key [c ; k_R] and the output's
  last d_R dims are dropped: with q, k and v of one width SDPA takes its fused
  kernel, where a narrower v falls back to the generic path. The dropped dims
  are sum_t p_t k_R,t, computed and thrown away; the kept ones are the same
  sums sum_t p_t c_t.

Equal: the same products and sums per element; only the kernels' order of
summation differs (relative error about (r + d_R) * eps_32).

Measured (``python benchmarks/bench_fast_forms.py --threads 1 --repeats 15``, gain over
the fast path without this form): deepseek-v2-tiny decode +19.0%, prefill 1x256 +49.0%.
"""

from __future__ import annotations

import torch

from ..blocks.attention import attend
from ..blocks.mla import MultiHeadLatentAttention


def per_head_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x`` ``[b, H, s, i]`` times head h's matrix ``weight[h]`` ``[i, o]`` -> ``[b, H, s, o]`` (= ``x @ weight``)."""
    batch, heads, seq, width = x.shape
    rows = x.transpose(0, 1).reshape(heads, batch * seq, width)
    return torch.bmm(rows, weight).view(heads, batch, seq, -1).transpose(0, 1)


class FastMultiHeadLatentAttention(MultiHeadLatentAttention):
    reference = MultiHeadLatentAttention

    def attend_absorbed(self, q_nope, q_rope, latent, k_rope, ctx, cache) -> torch.Tensor:
        w_uk, w_uv = self.up_weights()
        q = torch.cat((per_head_matmul(q_nope, w_uk), q_rope), dim=-1)
        keys = torch.cat((latent, k_rope), dim=-1)
        if cache is not None:
            keys = cache.append("latent", keys, ctx.past)
        out_latent = attend(q, keys, keys, ctx, self.scale)[..., : self.kv_lora_rank]
        return per_head_matmul(out_latent, w_uv.transpose(1, 2))
