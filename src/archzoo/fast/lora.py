"""Fast form of ``blocks.lora.LoRALinear``: y = W x + b + s B A x as one autograd node.

The reference adapter is five autograd nodes (the base linear, A, B, the
scaling, the sum), and its backward seven operations, each a separate pass
over ``[tokens, out]`` or a skinny matmul. Written out, the step needs only:

    forward    h = x A^T              [N, r]
               y = b + x W^T          (addmm)    then   y += s h B^T   (addmm_, in place)
    backward   dh = s dy B            dB = s dy^T h      dA = dh^T x
               dx = dy W + dh A       (one matmul, then addmm_ in place)

saving x, h (N r values) for the backward instead of also keeping s B A x's
intermediates. W and b are frozen, so their gradients are never formed.
With dropout on the adapter's input while training, or after ``merge()``, the
reference forward runs (the mask would have to be carried through the node), and
under autocast too (its casts apply to each operation of the reference; the
in-place sums here would mix bfloat16 and float32).

Equal: every output element is the same dot products as the reference, only
the two sums y = W x + s B (A x) and dx = W^T dy + A^T dh are accumulated by
one addmm instead of a separate add: one rounding apart (eps_32 * |y|).

Measured (``python benchmarks/bench_lora.py``): see that script's output.
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks.lora import LoRALinear


class LoRAFunction(torch.autograd.Function):
    """(x, W, b, A, B, s) -> W x + b + s B A x, with the backward written out (module docstring)."""

    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling):
        rows = x.reshape(-1, x.shape[-1])
        h = rows @ a.t()
        y = torch.addmm(bias, rows, weight.t()) if bias is not None else rows @ weight.t()
        y.addmm_(h, b.t(), alpha=scaling)
        ctx.save_for_backward(rows, h, weight, a, b)
        ctx.scaling, ctx.input_shape = scaling, x.shape
        return y.view(*x.shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        rows, h, weight, a, b = ctx.saved_tensors
        dy = dy.reshape(-1, dy.shape[-1])
        dh = (dy @ b).mul_(ctx.scaling)
        db = (dy.t() @ h).mul_(ctx.scaling)
        da = dh.t() @ rows
        dx = (dy @ weight).addmm_(dh, a).view(ctx.input_shape) if ctx.needs_input_grad[0] else None
        return dx, None, None, da, db, None


class FastLoRALinear(LoRALinear):
    reference = LoRALinear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or (self.training and not isinstance(self.lora_dropout, nn.Identity)):
            return LoRALinear.forward(self, x)
        if torch.is_autocast_enabled(x.device.type):
            return LoRALinear.forward(self, x)
        if self.weight.requires_grad or (self.bias is not None and self.bias.requires_grad):
            return LoRALinear.forward(self, x)  # a trainable base needs its own gradient: the reference has it
        return LoRAFunction.apply(x, self.weight, self.bias, self.lora_A.weight, self.lora_B.weight, self.scaling)
