"""Fast form of ``blocks.mla.MultiHeadLatentAttention``.

Training under CPU bfloat16 autocast, both modes run SDPA in float32, as ``fast/attention.py``
does for ``Attention`` and for the same reason (torch's CPU flash-attention backward is about 4x
slower in bfloat16); the absorbed form's key, which is also its value, is cast once. Both modes
also let SDPA make the plain causal mask itself (``fast/attention.py``, change 1): a deepseek-v2-tiny
float32 training step at 1x2048, 291 against 489 ms with the matrix (2-core Intel Xeon with AMX).

Two changes to ``attend_absorbed`` (naive mode is otherwise unchanged):

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
A bf16-autocast training step with AdamW, deepseek-v2-tiny 16x128 (2-core Intel Xeon with AMX,
2 threads, median of 12): +21.8% over the reference form. The float32 SDPA alone, against this
form with bfloat16 SDPA: 64.1 against 96.2 ms (+50%; 92.1 against 153.5 in a noisier run). Without
it this form was slower than the reference there: the reference's narrower value takes SDPA's
generic path, whose bfloat16 backward is less slow than the flash kernel's.
"""

from __future__ import annotations

import torch

from ..blocks.attention import AttentionContext
from ..blocks.mla import MultiHeadLatentAttention
from .attention import fast_attend


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
        out_latent = self.attend(q, keys, keys, ctx)[..., : self.kv_lora_rank]
        return per_head_matmul(out_latent, w_uv.transpose(1, 2))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        return fast_attend(q, k, v, ctx, self.scale)
