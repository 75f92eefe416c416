"""Fast form of ``blocks.attention.Attention`` for training under CPU autocast: SDPA in float32.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (``archzoo train --precision bf16``) q, k
and v arrive in bfloat16, and autocast runs ``F.scaled_dot_product_attention`` in bfloat16 too.
torch's CPU flash-attention kernel is fast in bfloat16 going forward, but its backward is
about 4x slower in bfloat16 than in float32 (2-core Intel Xeon with AMX, torch 2.13, causal
boolean mask, ``torch.profiler``: backward of [4, 8, 128, 64] 16.6 against 4.0 ms). So when a
gradient will flow through attention, this form casts q, k and v up to float32 (exactly: every
bfloat16 is a float32), runs SDPA with autocast off, and casts the output back to the autocast
dtype, which is what ``o_proj`` would have received:

    out = bf16( softmax(f32(q) f32(K)^T s + B) f32(V) )

Without gradients (evaluation, ``generate``) the reference runs: there the bfloat16 forward is
the faster one ([4, 8, 128, 64]: 0.79 against 3.75 ms with the casts), and upcasting a long KV
cache on every decode step costs far more than it saves (one query over 4096 slots: 0.36 against
6.5 ms). Only on the CPU and only for bfloat16 autocast, where it was measured; on CUDA
bfloat16 SDPA is the fast kernel.

Equal: the same bfloat16 inputs; the reference's kernel accumulates in float32 but rounds its
probabilities to bfloat16 before P V, this form rounds only the output, so both lie within a
few bfloat16 ulps (2^-8 relative) of exact attention, and so do their gradients (the reference's
backward rounds dP, dS to bfloat16 as well; this form's backward only its final dq, dk, dv).

``attend_for_training`` is the whole rule; multi-head latent attention's fast form
(``fast/mla.py``) calls it too.

Memory: SDPA keeps q, k, v and its output for the backward, in float32 here: 2 more bytes per
value of each, plus the bfloat16 output beside the float32 one (``inspect/saved_activations.py``
counts it: ``attention_bytes``).

Measured (fwd + bwd of SDPA alone, 2-core Intel Xeon with AMX, median of 30): [4, 8, 128, 64]
17.8 -> 7.9 ms, [16, 8, 128, 64] 68.1 -> 32.2 ms, [1, 8, 32, 64] 1.30 -> 0.63 ms, [1, 8, 512, 64]
17.9 -> 18.1 ms. A bf16-autocast training step with AdamW, gain over the fast path without this
form (``python benchmarks/bench_fast_forms.py --repeats 12 --only Attention``, same CPU, 2 threads):
small-LLaMA 4x128 +6.4% and +3.0% in two runs, llama-tiny 16x128 +69.7% and +63.1%; a float32
step +0.6% and +1.4% (the form is not used there: noise).
"""

from __future__ import annotations

import dataclasses

import torch

from ..blocks.attention import Attention, AttentionContext, attend


class FastAttention(Attention):
    reference = Attention

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        return attend_for_training(q, k, v, ctx, self.scale)


def attend_for_training(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext, scale: float) -> torch.Tensor:
    """``attend``, in float32 when ``float32_pays`` (module docstring); also multi-head latent
    attention's (``fast/mla.py``), whose absorbed form passes one tensor as both k and v: cast once."""
    if not float32_pays(q, k, v):
        return attend(q, k, v, ctx, scale)
    mask = ctx.mask
    if mask.is_floating_point() and mask.dtype != torch.float32:
        ctx = dataclasses.replace(ctx, mask=mask.float())
    k32 = k.float()
    with torch.autocast("cpu", enabled=False):
        out = attend(q.float(), k32, k32 if v is k else v.float(), ctx, scale)
    return out.to(torch.bfloat16)


def float32_pays(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Whether this call is a CPU bfloat16-autocast forward that a backward will follow (module docstring)."""
    return (
        q.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
    )
