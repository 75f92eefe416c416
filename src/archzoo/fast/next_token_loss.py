"""Fast form of ``blocks.next_token_loss.NextTokenLoss``: the head and the loss without the whole logits.

The reference forms z = h W^T for all N positions ([N, V] floats), then log-softmax, then
its backward allocates two more [N, V] tensors (the gradient of the log-probabilities and of
the logits). Each is a fresh allocation as large as the logits, and on these CPUs a fresh
65 MB tensor costs more in page faults than the arithmetic done on it (touching 65 MB of
new memory: 34 ms; of memory already in use: 2 ms; 2-core EPYC Zen 5).

The gradient is known as soon as the softmax is: with p_i = softmax(z_i) and e_y the target's
one-hot row,

    dL/dz_i = (p_i - e_{y_i}) / N        dL/dh_i = (dL/dz_i) W        dL/dW = sum_i (dL/dz_i)^T h_i

so the forward walks the positions in chunks of rows through one [rows, V] buffer, kept
between steps: logits of the chunk, their logsumexp and target logit (the loss),
then in place p - e_y, and its products with W and h (the gradients). Nothing of size
[N, V] exists; what the backward needs are dL/dh ([N, d]) and dL/dW ([V, d], the size of the
head's gradient anyway), kept from the forward and scaled by the incoming gradient (1, or
1/accumulate). The same three matmuls as the reference, the same FLOPs.

Runs for a plain float32 ``nn.Linear`` head without bias when the logits would be large
(``MIN_LOGITS``), in float32 or under bfloat16 autocast; any other head (Baichuan 2's NormHead,
a quantized or LoRA head, a bfloat16 one as FSDP2 gathers it), dtype, or autocast dtype runs the
reference. Without gradients (evaluation) it computes only the loss, chunk by chunk.

Under bfloat16 autocast (``archzoo train --precision bf16``) it rounds where autocast rounds the
reference: the matmuls take bfloat16 copies of h and W, and the logits come out in bfloat16,
into a second kept buffer (``chunk_buffer_low``), and are copied into the float32 one, which the
reference's ``.float()`` gives; the softmax is float32; dL/dz is rounded to bfloat16 before its
two products, as autocast's backward casts it, and their results are rounded to bfloat16 (dL/dW
once per chunk, then summed in float32). Autocast's own W copy would live until the backward; this
one is gone when the forward ends.

Equal: the same logits (the same dot products; BLAS may block the k-sum differently by chunk
shape), a logsumexp and a softmax in float32, and dL/dW accumulated over chunks instead of in
one matmul: float32 sums in another order, about (V + d) eps_32 relative.

Measured (``python benchmarks/bench_fast_forms.py --repeats 12 --only NextTokenLoss``, gain over the
fast path without this form, 2-core EPYC Zen 5, quiet): small-llama training step 4x128 (AdamW,
vocab 32k) +26.3% and +20.9% in two runs, 1x128 +1.8% and +6.5%; a LoRA step of the same model:
1.50x, 1.26x and 1.21x peft's in three runs, from 1.02x before (``benchmarks/bench_lora.py``,
which runs each library's own loss). Under bf16 autocast, 2-core Intel Xeon with AMX, same command
with ``--only NextTokenLoss``: small-llama 4x128 +14.8% (524 against 601 ms a step).
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks.next_token_loss import IGNORE_INDEX, NextTokenLoss
from .linear import FastLinear

MIN_LOGITS = 2**21
"""Below this many logits (N x V; 8 MB of float32) the reference runs: its logits are cheap to
allocate, and the chunked form's extra small kernels cost more than they save (float32, 2-core
EPYC Zen 5, forward + backward, reference / fused: N x V = 16 x 32000: 0.97, 64 x 32000: 1.15,
1024 x 4096: 1.13, 256 x 32000: 1.16; any N at V = 512: 0.5-0.95)."""

CHUNK_ELEMENTS = 2**24
"""Most logits per chunk (64 MB of float32). Rows per chunk: the largest power of two that fits
(512 at a 32k vocabulary, 64 at 152k), at most N. The logits matmul runs at full speed only with
a few hundred rows (float32, 2-core EPYC Zen 5, [M, 512] x [512, 32000]: 116 GFLOP/s at M = 128,
146 at M = 512)."""


class FastNextTokenLoss(NextTokenLoss):
    reference = NextTokenLoss

    def forward(self, hidden: torch.Tensor, head: nn.Module, targets: torch.Tensor) -> torch.Tensor:
        low = matmul_dtype(hidden, head)
        if low is None or targets.numel() * head.weight.shape[0] < MIN_LOGITS:
            return NextTokenLoss.forward(self, hidden, head, targets)
        rows, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
        n_rows, vocab = rows.shape[0], head.weight.shape[0]
        buffer = self.workspace("chunk_buffer", n_rows, vocab, torch.float32, rows.device)
        low_buffer = None if low == torch.float32 else self.workspace("chunk_buffer_low", n_rows, vocab, low, rows.device)
        if torch.is_grad_enabled() and (hidden.requires_grad or head.weight.requires_grad):
            return HeadCrossEntropy.apply(rows, head.weight, flat_targets, buffer, low_buffer)
        loss, _, _, _ = head_cross_entropy(
            rows, head.weight, flat_targets, buffer, low_buffer, want_hidden=False, want_weight=False
        )
        return loss

    def workspace(self, name: str, n_rows: int, vocab: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A [rows, V] chunk buffer, kept between calls: a fresh tensor this size costs its page faults
        at every step (module docstring). Not a buffer of the module: ``state_dict`` never sees it."""
        rows = chunk_rows(n_rows, vocab)
        buffer = self.__dict__.get(name)
        if buffer is None or buffer.device != device or buffer.dtype != dtype or buffer.shape[1] != vocab or buffer.shape[0] < rows:
            with torch.inference_mode(False):
                buffer = self.__dict__[name] = torch.empty(rows, vocab, dtype=dtype, device=device)
        return buffer[:rows]

    def __getstate__(self) -> dict:
        return {k: v for k, v in super().__getstate__().items() if k not in WORKSPACES}


WORKSPACES = ("chunk_buffer", "chunk_buffer_low")
"""The float32 chunk buffer, and under autocast its bfloat16 twin (the matmuls' side)."""


def chunk_rows(n_rows: int, vocab: int) -> int:
    """Rows per chunk: the largest power of two whose logits fit ``CHUNK_ELEMENTS``, at most ``n_rows``."""
    return min(n_rows, 1 << max(0, (CHUNK_ELEMENTS // vocab).bit_length() - 1))


def matmul_dtype(hidden: torch.Tensor, head: nn.Module) -> torch.dtype | None:
    """The dtype the fused form runs the head's matmuls in, or None where the reference runs: float32, or
    bfloat16 under bfloat16 autocast (autocast's own choice for them) of a float32 head."""
    plain = type(head) in (nn.Linear, FastLinear) and head.bias is None and head.weight.dtype == torch.float32
    if not plain:
        return None
    if not torch.is_autocast_enabled(hidden.device.type):
        return torch.float32 if hidden.dtype == torch.float32 else None
    low = torch.get_autocast_dtype(hidden.device.type)
    return low if low == torch.bfloat16 and hidden.dtype in (torch.float32, torch.bfloat16) else None


def head_cross_entropy(
    rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, buffer: torch.Tensor,
    low_buffer: torch.Tensor | None = None, *, want_hidden: bool, want_weight: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(mean loss, N, N dL/dh, N dL/dW) for ``rows [N, d]``, ``weight [V, d]``, ``targets [N]``, one
    ``buffer``-sized chunk of rows at a time. With ``low_buffer`` (autocast) the three matmuls run in its
    dtype, rounding where autocast rounds the reference: h and W, the logits, dL/dz, and the products."""
    with torch.autocast(rows.device.type, enabled=False):  # every cast below is explicit
        if low_buffer is None:
            return _chunked(rows, weight, targets, buffer, None, want_hidden, want_weight)
        low = low_buffer.dtype
        return _chunked(rows.to(low), weight.to(low), targets, buffer, low_buffer, want_hidden, want_weight)


def _chunked(rows, weight, targets, buffer, low_buffer, want_hidden, want_weight):
    n_rows, chunk = rows.shape[0], buffer.shape[0]
    kept = targets != IGNORE_INDEX
    safe_targets = torch.where(kept, targets, 0)
    grad_hidden = torch.empty(rows.shape, dtype=torch.float32, device=rows.device) if want_hidden else None
    grad_weight = None
    total = buffer.new_zeros(())
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        h, y, keep = rows[start:stop], safe_targets[start:stop, None], kept[start:stop, None]
        if low_buffer is None:
            z = torch.mm(h, weight.t(), out=buffer[: stop - start])
        else:  # logits rounded to bfloat16, then the float32 ones the reference's .float() makes
            z = buffer[: stop - start].copy_(torch.mm(h, weight.t(), out=low_buffer[: stop - start]))
        target_logit = z.gather(1, y)
        top = z.amax(dim=1, keepdim=True)
        p = z.sub_(top).exp_()  # exp(z - max z), in the buffer
        total_p = p.sum(dim=1, keepdim=True)
        lse = total_p.log() + top  # logsumexp(z)
        total += torch.where(keep, lse - target_logit, 0).sum()
        if not (want_hidden or want_weight):
            continue
        p.div_(torch.where(keep, total_p, torch.inf))  # softmax; 0 on an ignored position
        p.scatter_add_(1, y, -keep.to(p.dtype))  # p - e_y
        if low_buffer is None:
            if want_hidden:
                torch.mm(p, weight, out=grad_hidden[start:stop])
            if want_weight:
                grad_weight = torch.mm(p.t(), h) if grad_weight is None else grad_weight.addmm_(p.t(), h)
            continue
        p = low_buffer[: stop - start].copy_(p)  # dL/dz in bfloat16, as autocast's backward casts it
        if want_hidden:
            grad_hidden[start:stop] = torch.mm(p, weight)
        if want_weight:
            part = torch.mm(p.t(), h)  # rounded to bfloat16 once, then summed over chunks in float32
            grad_weight = part.float() if grad_weight is None else grad_weight.add_(part)
    if want_weight and grad_weight is None:  # no rows at all
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
    n_kept = kept.sum()
    return total / n_kept, n_kept, grad_hidden, grad_weight


class HeadCrossEntropy(torch.autograd.Function):
    """(rows, W, targets) -> mean cross-entropy of rows W^T; the gradients are formed in the forward (module docstring)."""

    @staticmethod
    def forward(ctx, rows, weight, targets, buffer, low_buffer):
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        loss, n_kept, grad_hidden, grad_weight = head_cross_entropy(
            rows, weight, targets, buffer, low_buffer, want_hidden=want_hidden, want_weight=want_weight
        )
        ctx.save_for_backward(n_kept)
        ctx.hidden_dtype = rows.dtype
        ctx.grads = [grad_hidden, grad_weight]  # not saved tensors: scaled in place, once
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        if torch.is_grad_enabled():  # backward(create_graph=True): these gradients were formed, not traced
            raise RuntimeError(
                "the fused head cross-entropy cannot be differentiated twice (create_graph=True): its gradients "
                "were formed in the forward; use implementation='reference'"
            )
        if ctx.grads is None:
            raise RuntimeError(
                "the fused head cross-entropy's backward ran twice (retain_graph=True): its gradients were "
                "formed once, in the forward; use implementation='reference' to differentiate it again"
            )
        (n_kept,) = ctx.saved_tensors
        scale = grad_loss / n_kept.clamp(min=1)  # no kept position: zero gradients, as the reference gives
        grad_hidden, grad_weight = ctx.grads
        ctx.grads = None
        return (
            grad_hidden.mul_(scale).to(ctx.hidden_dtype) if grad_hidden is not None else None,
            grad_weight.mul_(scale) if grad_weight is not None else None,
            None,
            None,
            None,
        )
