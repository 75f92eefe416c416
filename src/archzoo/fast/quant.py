"""The quantized linear layer on torch's packed CPU kernels, where they exist and agree.

``blocks/quant.py``'s ``QuantLinear`` dequantizes W' and calls ``F.linear``:
always right, but a decoding token then reads (and writes) a float copy of
every weight. torch ships kernels that multiply by the integers directly:

int8  ``torch._weight_int8pack_mm(x [M, K], q int8 [N, K], s [N])`` = x (s q)^T:
      the reference's own buffers, nothing converted or copied.
int4  ``torch._weight_int4pack_mm_for_cpu(x, packed, g, sz [K/g, N, 2])`` with
      W' = s (q - 8) + z: the reference's s q + m with z = m + 8 s (symmetric int4:
      z = 0); a group the kernel does not take (ChatGLM-6B's whole rows) that is a
      multiple of one it does is handed over as that smaller group, its (s, z)
      repeated; the codes
      repacked once by ``torch._convert_weight_to_int4pack_for_cpu(q int32 [N, K], 1)``
      into the kernel's tiled layout (kept beside the reference's nibbles, which
      ``state_dict`` and saving read: so int4 holds its codes twice on this path).

These are private ops whose names and signatures changed across torch
releases (``_weight_int4pack_mm`` took CPU tensors before 2.6, the packing
took uint8 before 2.5), so each is probed once per dtype on a tiny case and
used only if it runs and matches the dequantize-and-matmul result; anything
else (a missing op, an error, a mismatch, a shape the kernel does not take:
int4 needs K a multiple of g, g in 32/64/128/256, N a multiple of 16) runs
the reference forward, so a missing kernel never changes a result beyond
float rounding.

Working is not enough: the kernel must also be faster. With bfloat16
activations it is, by far; with float32 ones torch's kernels were measured
slower than dequantize-and-matmul (bench_quant on a 2-core Zen 5, last
session: 16.98 against 11.98 ms per decoded token), and by how much depends
on the CPU. So a second probe, once per mode and dtype, times both paths on a
``KERNEL_ROWS``-row product with a 1024 x 1024 weight (best of 7 interleaved
rounds each) and the kernel runs only where it won, and only for inputs of at
most ``KERNEL_ROWS`` rows (decode steps and small batches): the kernels' cost
grows with the rows much faster than a matmul's. Measured on the 2-core Zen 5,
1024 x 1024, kernel against dequantize, ms:

    rows              1              16              512
    int8 bf16    0.019 / 0.208   0.114 / 0.244    3.60 / 1.44
    int4 bf16    0.020 / 0.890   0.109 / 0.644    3.30 / 3.31
    int8 fp32    0.378 / 0.211   6.32  / 0.453    202  / 5.76
    int4 fp32    0.829 / 0.637   13.2  / 3.69     425  / 7.19

A probe at 1 row was too close to call for int4 in float32 (it chose the kernel
on one run, and a 8 x 64-token forward of llama-tiny then took 155 ms instead of
6 ms); at 16 rows each side wins by 2x or more, so noise cannot flip it.
``kernel_path(module, dtype)`` says which path a layer takes; ``kernel_forward``
runs the kernel whatever the timing probe says (the equality tests call it).

Alignment: torch 2.13's int8 kernel reads its activations and codes with
aligned vector loads once it has more than two rows, and dies (SIGSEGV) on a
tensor whose data starts 40 bytes past a 64-byte boundary, which is where
safetensors hands out tensors of a loaded file. So the codes of a loaded
model are moved once into freshly allocated (64-byte aligned) storage
(``align_codes``, called by ``load_pretrained``), a layer whose codes are not
aligned takes the dequantize path, and activations that are not aligned are
copied before the call.
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F

from ..blocks.quant import QuantLinear

INT4_GROUP_SIZES = (32, 64, 128, 256)
KERNEL_ROWS = 16
"""Most input rows the packed kernels take (see the table in the module docstring); more go dequantized."""


def _int8_mm(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return torch._weight_int8pack_mm(x, q, scales)


def _int4_pack(q: torch.Tensor) -> torch.Tensor:
    return torch._convert_weight_to_int4pack_for_cpu(q.to(torch.int32), 1)


def _int4_mm(x: torch.Tensor, packed: torch.Tensor, group_size: int, scale_zeros: torch.Tensor) -> torch.Tensor:
    return torch._weight_int4pack_mm_for_cpu(x, packed, group_size, scale_zeros)


def int4_kernel_group(layer: QuantLinear) -> int | None:
    """The group size the int4 kernel is given for ``layer``: its own if the kernel takes it, else
    the largest one the kernel takes that divides it (the scales then repeat); None if none does."""
    if layer.in_features % layer.group_size:
        return None
    return next((g for g in sorted(INT4_GROUP_SIZES, reverse=True) if layer.group_size % g == 0), None)


def int4_scale_zeros(layer: QuantLinear, dtype: torch.dtype) -> torch.Tensor:
    """``[groups, N, 2]``: (s, z = m + 8 s, or 0 when symmetric) per kernel group and row, the
    int4 kernel's form of (s, m)."""
    scales = layer.scales.float()
    zeros = torch.zeros_like(scales) if layer.symmetric else layer.mins.float() + 8 * scales
    repeat = layer.group_size // int4_kernel_group(layer)
    pairs = torch.stack((scales, zeros), dim=-1).repeat_interleave(repeat, dim=1)
    return pairs.transpose(0, 1).contiguous().to(dtype)


@functools.cache
def kernel_works(mode: str, dtype: torch.dtype) -> bool:
    """Whether torch's ``mode`` kernel exists, runs and equals the dequantize path here for ``dtype``."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(32, 64, generator=generator)
    layer = QuantLinear.from_linear(torch.nn.Linear(64, 32, bias=False), mode, 32, weight.to(dtype))
    x = torch.randn(3, 64, generator=generator).to(dtype)
    try:
        got = FastQuantLinear.kernel_forward(layer, x)
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):
        return False
    want = F.linear(x.float(), layer.dequantize(torch.float32))
    # 64-term dot products of |terms| <= ~3 x 2.5: float32 rounding ~1e-5; bf16 inputs and
    # outputs round to 2^-8 relative, so bf16 gets 2^-7 of the result's scale
    tolerance = 1e-4 if dtype == torch.float32 else 2.0**-7 * want.abs().max().item()
    return got.shape == want.shape and bool(torch.allclose(got.float(), want, atol=tolerance, rtol=0))


@functools.cache
def kernel_is_faster(mode: str, dtype: torch.dtype) -> bool:
    """Whether the ``mode`` kernel beats dequantize-and-matmul here for ``dtype`` on a ``KERNEL_ROWS``-row
    product with a 1024 x 1024 weight (best of 7 interleaved timings each; see the module docstring)."""
    generator = torch.Generator().manual_seed(0)
    layer = FastQuantLinear.from_linear(
        torch.nn.Linear(1024, 1024, bias=False), mode, 128, (torch.randn(1024, 1024, generator=generator) / 32).to(dtype))
    x = torch.randn(KERNEL_ROWS, 1024, generator=generator).to(dtype)
    paths = {"kernel": layer.kernel_forward, "dequantize": lambda v: QuantLinear.forward(layer, v)}
    best = dict.fromkeys(paths, float("inf"))
    with torch.inference_mode():
        for run in paths.values():
            run(x)  # warm-up (int4 repacks once)
        for _ in range(7):
            for name, run in paths.items():
                start = time.perf_counter()
                run(x)
                best[name] = min(best[name], time.perf_counter() - start)
    return best["kernel"] < best["dequantize"]


ALIGNMENT = 64
"""Bytes: the CPU allocator's alignment, which the int8 kernel's vector loads rely on."""


def aligned(t: torch.Tensor) -> bool:
    return t.data_ptr() % ALIGNMENT == 0


def align_codes(model: torch.nn.Module) -> torch.nn.Module:
    """Every quantized layer's int8 codes and scales in freshly allocated storage where they are not
    aligned (tensors read from a safetensors file often are not); values unchanged."""
    for layer in model.modules():
        if isinstance(layer, QuantLinear) and layer.mode == "int8":
            for name in ("qweight", "scales"):
                tensor = getattr(layer, name)
                if tensor.device.type == "cpu" and not aligned(tensor):
                    setattr(layer, name, tensor.clone())
    return model


def kernel_fits(layer: QuantLinear, dtype: torch.dtype) -> bool:
    """Whether torch's kernel for ``layer``'s mode works here and takes this layer and ``dtype``."""
    if layer.qweight.device.type != "cpu" or layer.scales.dtype != dtype:
        return False
    if layer.mode == "int8":
        return aligned(layer.qweight) and kernel_works("int8", dtype)
    return int4_kernel_group(layer) is not None and layer.out_features % 16 == 0 and kernel_works("int4", dtype)


def kernel_path(layer: QuantLinear, dtype: torch.dtype) -> str:
    """The path ``layer`` takes for inputs of ``dtype``: ``int8pack_mm`` or ``int4pack_mm`` where the
    kernel fits and was measured faster here, else ``dequantize``."""
    if not (kernel_fits(layer, dtype) and kernel_is_faster(layer.mode, dtype)):
        return "dequantize"
    return "int8pack_mm" if layer.mode == "int8" else "int4pack_mm"


class FastQuantLinear(QuantLinear):
    """``QuantLinear`` (same buffers, same state dict) whose forward calls torch's packed kernel when it can."""

    reference = QuantLinear

    def kernel_forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if not rows.is_contiguous():
            rows = rows.contiguous()
        if not aligned(rows):  # a view into a larger tensor (see the module docstring)
            rows = rows.clone()
        if self.mode == "int8":
            y = _int8_mm(rows, self.qweight, self.scales)
        else:
            cache = self.__dict__.setdefault("_int4_kernel", {})
            if x.dtype not in cache:  # repacked once per dtype (the codes are fixed once quantized)
                cache[x.dtype] = (_int4_pack(self.codes()), int4_scale_zeros(self, x.dtype))
            packed, scale_zeros = cache[x.dtype]
            y = _int4_mm(rows, packed, int4_kernel_group(self), scale_zeros)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.view(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.numel() > KERNEL_ROWS * self.in_features or kernel_path(self, x.dtype) == "dequantize":
            return super().forward(x)
        return self.kernel_forward(x)

    def _apply(self, fn, recurse=True):
        self.__dict__.pop("_int4_kernel", None)  # .to(dtype / device): repack from the moved buffers
        return super()._apply(fn, recurse)
