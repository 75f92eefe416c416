"""Fast form of ``blocks.attention.Attention``: SDPA's own causal mask, and float32 SDPA under CPU autocast.

1. SDPA's own causal mask. The reference hands SDPA the boolean matrix B (``blocks/masks.py``),
which SDPA turns into a float [q, kv] matrix (kept for the backward) and adds to every block of
scores, the blocks above the diagonal included. Where that matrix is exactly SDPA's
``is_causal=True`` one (key j visible to query i iff j <= i: ``causal_mask`` with no cache or
prefix slot before the queries, ``is_plain_causal``), this form passes ``is_causal=True``, and
torch's flash kernel skips the key blocks wholly above the diagonal: about half the work of a
long sequence. Padding, a cache or prefix ahead of the queries, ALiBi's bias and GLM's masks keep
the matrix. Equal: a skipped block's probabilities are exactly 0 (exp(-inf)), so the kernel adds
nothing it would otherwise have added; the outputs and gradients match to the bit on this
project's CPUs, and the test bounds both forms by float32's sums against exact attention.

2. Float32 SDPA under bfloat16 autocast. Under ``torch.autocast("cpu", dtype=torch.bfloat16)``
(``archzoo train --precision bf16``) q, k and v arrive in bfloat16, and autocast runs
``F.scaled_dot_product_attention`` in bfloat16 too.
torch's CPU flash-attention kernel is fast in bfloat16 going forward, but its backward is
about 4x slower in bfloat16 than in float32 (2-core Intel Xeon with AMX, torch 2.13, causal
boolean mask, ``torch.profiler``: backward of [4, 8, 128, 64] 16.6 against 4.0 ms). So when a
gradient will flow through attention, this form casts q, k and v up to float32 (exactly: every
bfloat16 is a float32), runs SDPA with autocast off, and casts the output back to the autocast
dtype, which is what ``o_proj`` would have received:

    out = bf16( softmax(f32(q) f32(K)^T s + B) f32(V) )

Without gradients (evaluation, ``generate``) SDPA stays in bfloat16: there its forward is
the faster one ([4, 8, 128, 64]: 0.79 against 3.75 ms with the casts), and upcasting a long KV
cache on every decode step costs far more than it saves (one query over 4096 slots: 0.36 against
6.5 ms). Only on the CPU and only for bfloat16 autocast, where it was measured; on CUDA
bfloat16 SDPA is the fast kernel.

Equal: the same bfloat16 inputs; the reference's kernel accumulates in float32 but rounds its
probabilities to bfloat16 before P V, this form rounds only the output, so both lie within a
few bfloat16 ulps (2^-8 relative) of exact attention, and so do their gradients (the reference's
backward rounds dP, dS to bfloat16 as well; this form's backward only its final dq, dk, dv).

``fast_attend`` is the whole rule, both changes; multi-head latent attention's fast form
(``fast/mla.py``) calls it too.

Memory: (1) drops the float mask SDPA would keep, 4 q kv bytes a layer. (2) SDPA keeps q, k, v and
its output for the backward, in float32 here: 2 more bytes per value of each, plus the bfloat16
output beside the float32 one (``inspect/saved_activations.py`` counts it: ``attention_bytes``).

Measured, (1): SDPA forward + backward alone, float32, [2, 8, 1024, 64]: 102 against 69 ms; [4, 8, 128,
64]: 5.1 against 5.2 ms (notebook 02 plots it against the length). Training steps, fused AdamW, gain over the fast
path without this form (``python benchmarks/bench_fast_forms.py --repeats 8 --only Attention``, 2-core
Intel Xeon with AMX, 2 threads): llama-tiny 1x2048 +45.3% (fp32) and +40.3% (bf16), small-LLaMA
1x1024 +7.1%; small-LLaMA prefill 1x2048 +19.9%. For ``fast/mla.py`` (deepseek-v2-tiny, fp32 step
1x2048) this change alone: 291 against 489 ms. It was measured and dropped before, at 32-256
positions (under 5%); the long sequences are where it pays.

Measured, (2) (fwd + bwd of SDPA alone, 2-core Intel Xeon with AMX, median of 30): [4, 8, 128, 64]
17.8 -> 7.9 ms, [16, 8, 128, 64] 68.1 -> 32.2 ms, [1, 8, 32, 64] 1.30 -> 0.63 ms, [1, 8, 512, 64]
17.9 -> 18.1 ms. A bf16-autocast training step with AdamW, gain over the fast path without this
form (``python benchmarks/bench_fast_forms.py --repeats 12 --only Attention``, same CPU, 2 threads):
small-LLaMA 4x128 +6.4% and +3.0% in two runs, llama-tiny 16x128 +69.7% and +63.1%; a float32
step +0.6% and +1.4% (the form is not used there: noise).
"""

from __future__ import annotations

import dataclasses

import torch

from ..blocks.attention import Attention, AttentionContext, attend, sdpa


class FastAttention(Attention):
    reference = Attention

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        return fast_attend(q, k, v, ctx, self.scale)


def fast_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext, scale: float) -> torch.Tensor:
    """``attend``, in float32 when ``float32_pays``, with SDPA's own causal mask when ``is_plain_causal``
    (module docstring); also multi-head latent attention's (``fast/mla.py``), whose absorbed form passes
    one tensor as both k and v: cast once."""
    if not float32_pays(q, k, v):
        return attend_causal_or_masked(q, k, v, ctx, scale)
    mask = ctx.mask
    if mask.is_floating_point() and mask.dtype != torch.float32:
        ctx = dataclasses.replace(ctx, mask=mask.float())
    k32 = k.float()
    with torch.autocast("cpu", enabled=False):
        out = attend_causal_or_masked(q.float(), k32, k32 if v is k else v.float(), ctx, scale)
    return out.to(torch.bfloat16)


def attend_causal_or_masked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext, scale: float) -> torch.Tensor:
    """``attend``; ``is_causal=True`` in place of the boolean matrix where that is the same mask."""
    if is_plain_causal(q, k, ctx):
        return sdpa(q, k, v, scale, is_causal=True)
    return attend(q, k, v, ctx, scale)


def is_plain_causal(q: torch.Tensor, k: torch.Tensor, ctx: AttentionContext) -> bool:
    """Whether ctx's mask is SDPA's ``is_causal`` one: key j visible to query i iff j <= i. ``ctx.causal``
    says it is ``causal_mask(q, past + q, past)``; SDPA aligns its triangle to the top left, which is
    that mask exactly when q and k are as long (past = 0: no cache or prefix slot before the queries)."""
    return ctx.causal and q.shape[-2] == k.shape[-2]


def float32_pays(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether this call is a CPU bfloat16-autocast forward that a backward will follow (module docstring)."""
    return (
        q.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
    )
