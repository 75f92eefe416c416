"""Weight-only quantization: integer weights and their scales, dequantized in the forward.

A linear layer y = x W^T + b keeps W ``[out, in]`` as small integers q and a
few floats per row, and multiplies by the dequantized W' (round to nearest;
no calibration data: Dettmers et al. 2022 "LLM.int8()" for per-row absmax
int8, Frantar et al. 2022 / Lin et al. 2023 for the grouped int4 layout).

int8, symmetric, one scale per output channel (row i):

    s_i   = max_j |W_ij| / 127
    q_ij  = round(W_ij / s_i)                   in [-127, 127], stored int8
    W'_ij = s_i q_ij                            |W_ij - W'_ij| <= s_i / 2

int4, asymmetric (min-max), one scale and one minimum per group of g input
dims along each row (columns k g .. (k+1) g - 1; a last group may be shorter):

    m_ik  = min_{j in group k} W_ij             s_ik = (max_j W_ij - m_ik) / 15
    q_ij  = round((W_ij - m_ik) / s_ik)         in [0, 15], two per byte (even column: low nibble)
    W'_ij = s_ik q_ij + m_ik                    |W_ij - W'_ij| <= s_ik / 2

int4, symmetric (``symmetric=True``; ChatGLM-6B's released INT4 form, there one group
per row, ``group_size=None``): no minimum, the zero of the grid is code 8:

    s_ik  = max_{j in group k} |W_ij| / 7
    q_ij  = round(W_ij / s_ik) + 8              in [1, 15] (a loaded checkpoint may hold 0, i.e. -8)
    W'_ij = s_ik (q_ij - 8)                     |W_ij - W'_ij| <= s_ik / 2

Why asymmetric for int4 by default: with only 16 levels, a symmetric grid (s = max|w| / 7,
codes -7..7) spends its levels on [-max|w|, max|w|] even when a group is
skewed, and leaves the 16th code unused; min-max spreads all 16 codes over
the range the group actually spans, a step of range/15 against 2 max|w|/7,
never larger, at the price of one more float per group. It is also the
layout of torch's int4 CPU kernel (w = s (q - 8) + z, z = m + 8 s;
``fast/quant.py``). int8 needs no zero point: 255 levels make the step small
already, and symmetric codes keep int8 x int8-style kernels simple.

Edge cases: a row (int8) or group (int4) that is all zeros gets s = 1, so
q = 0 and W' = 0 exactly; a constant group gets s = 1 and q = 0, W' = m exactly.
An outlier only coarsens the step of its own row (int8) or group (int4).

Scales and minimums are stored in the dtype the float weight had (float32
or bfloat16: what torch's kernels take beside activations of that dtype);
q is computed against the stored, rounded scale, so W' is exactly what the
stored numbers say. Biases, when a layer has one, stay float.

Storage per weight ``[out, in]``: int8 ``out x in`` bytes + ``out`` scales;
int4 ``out x ceil(in / 2)`` bytes + ``2 x out x ceil(in / g)`` floats (symmetric: ``out x ceil(in / g)``).
``group_size=None`` (int4) means one group per row, g = in.
``QuantizedWeight.storage_bytes`` says it without building anything, and
``inspect/memory.py`` counts with it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

BITS = {"int8": 8, "int4": 4}
"""Quantization mode -> bits per weight."""


def quantize_int8(weight: torch.Tensor, scale_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 ``[..., out, in]``, s ``[..., out]``) with W ~ s q, per row (see the module docstring)."""
    w = weight.float()
    scales = (w.abs().amax(dim=-1) / 127).to(scale_dtype)
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)  # a zero row: q = 0, W' = 0
    q = torch.round(w / scales.float().unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
    return q, scales


def quantize_int4(
    weight: torch.Tensor, group_size: int, scale_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(packed uint8 ``[..., out, ceil(in/2)]``, s ``[..., out, groups]``, m ``[..., out, groups]``)
    with W ~ s q + m per group of ``group_size`` input dims."""
    w = weight.float()
    columns = w.shape[-1]
    groups = math.ceil(columns / group_size)
    padded = F.pad(w, (0, groups * group_size - columns))  # the pad is only looked at below through `valid`
    blocks = padded.unflatten(-1, (groups, group_size))
    valid = (torch.arange(groups * group_size, device=w.device) < columns).view(groups, group_size)
    lo = torch.where(valid, blocks, torch.inf).amin(dim=-1)
    hi = torch.where(valid, blocks, -torch.inf).amax(dim=-1)
    scales = ((hi - lo) / 15).to(scale_dtype)
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)  # a constant group: q = 0, W' = m
    mins = lo.to(scale_dtype)
    q = torch.round((w - expand_groups(mins, group_size, columns)) / expand_groups(scales, group_size, columns))
    return pack_int4(q.clamp_(0, 15).to(torch.uint8)), scales, mins


def quantize_int4_symmetric(
    weight: torch.Tensor, group_size: int, scale_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed uint8 ``[..., out, ceil(in/2)]``, s ``[..., out, groups]``) with W ~ s (q - 8) per group."""
    w = weight.float()
    columns = w.shape[-1]
    groups = math.ceil(columns / group_size)
    blocks = F.pad(w, (0, groups * group_size - columns)).unflatten(-1, (groups, group_size))  # zero pad: |0| adds nothing
    scales = (blocks.abs().amax(dim=-1) / 7).to(scale_dtype)
    scales = torch.where(scales == 0, torch.ones_like(scales), scales)  # a zero group: q = 8, W' = 0
    q = torch.round(w / expand_groups(scales, group_size, columns)).clamp_(-7, 7) + 8
    return pack_int4(q.to(torch.uint8)), scales


def expand_groups(values: torch.Tensor, group_size: int, columns: int) -> torch.Tensor:
    """Per-group values ``[..., groups]`` -> per-column ``[..., columns]`` (float32)."""
    return values.float().repeat_interleave(group_size, dim=-1)[..., :columns]


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Codes 0..15 ``[..., n]`` (uint8) -> ``[..., ceil(n/2)]`` bytes, column 2j in the low nibble, 2j+1 high."""
    if q.shape[-1] % 2:
        q = F.pad(q, (0, 1))
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_int4(packed: torch.Tensor, columns: int) -> torch.Tensor:
    """Inverse of ``pack_int4``: ``[..., columns]`` codes 0..15 (uint8)."""
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).flatten(-2)[..., :columns]


class QuantizedWeight(nn.Module):
    """A weight ``[..., out, in]`` held as integers and scales (buffers ``qweight``, ``scales``, and for
    min-max int4 ``mins``); ``dequantize()`` gives W', ``self[e]`` the matrix of leading index e (stacked experts).

    group_size: int4 input dims per group (None: one group per row). symmetric: int4 without
    minimums, W' = s (q - 8) (int8 is always symmetric)."""

    def __init__(self, shape: tuple[int, ...], mode: str, group_size: int | None, scale_dtype: torch.dtype, device=None,
                 *, symmetric: bool = False):
        super().__init__()
        if mode not in BITS:
            raise ValueError(f"mode must be one of {tuple(BITS)}, got {mode!r}")
        self.shape, self.mode = tuple(shape), mode
        self.out_features, self.in_features = shape[-2], shape[-1]
        self.group_size = self.in_features if mode == "int8" else min(group_size or self.in_features, self.in_features)
        self.symmetric = mode == "int8" or bool(symmetric)
        for name, (size, dtype) in self.buffer_shapes(shape, mode, self.group_size, scale_dtype, self.symmetric).items():
            self.register_buffer(name, torch.empty(size, dtype=dtype, device=device))

    @staticmethod
    def buffer_shapes(shape, mode: str, group_size: int | None, scale_dtype: torch.dtype,
                      symmetric: bool = False) -> dict[str, tuple[tuple, torch.dtype]]:
        """Name -> (shape, dtype) of every stored tensor (the one place the layout is written down)."""
        *lead, rows, columns = shape
        if mode == "int8":
            return {"qweight": ((*lead, rows, columns), torch.int8), "scales": ((*lead, rows), scale_dtype)}
        groups = math.ceil(columns / min(group_size or columns, columns))
        shapes = {
            "qweight": ((*lead, rows, math.ceil(columns / 2)), torch.uint8),
            "scales": ((*lead, rows, groups), scale_dtype),
        }
        if not symmetric:
            shapes["mins"] = ((*lead, rows, groups), scale_dtype)
        return shapes

    @classmethod
    def storage_bytes(cls, shape, mode: str, group_size: int | None, scale_dtype: torch.dtype, symmetric: bool = False) -> int:
        """Bytes the quantized form of a weight of ``shape`` stores."""
        return sum(
            math.prod(size) * dtype.itemsize
            for size, dtype in cls.buffer_shapes(shape, mode, group_size, scale_dtype, symmetric).values()
        )

    @torch.no_grad()
    def set_weight(self, weight: torch.Tensor) -> QuantizedWeight:
        """Quantize ``weight`` (shaped ``self.shape``) into the buffers."""
        if weight.is_meta:
            return self
        if self.mode == "int8":
            q, scales = quantize_int8(weight, self.scales.dtype)
            self.qweight.copy_(q)
        elif self.symmetric:
            q, scales = quantize_int4_symmetric(weight, self.group_size, self.scales.dtype)
            self.qweight.copy_(q)
        else:
            q, scales, mins = quantize_int4(weight, self.group_size, self.scales.dtype)
            self.qweight.copy_(q)
            self.mins.copy_(mins)
        self.scales.copy_(scales)
        return self

    @classmethod
    def from_weight(cls, weight: torch.Tensor, mode: str, group_size: int | None, *, symmetric: bool = False) -> QuantizedWeight:
        module = cls(tuple(weight.shape), mode, group_size, weight.dtype, device=weight.device, symmetric=symmetric)
        return module.set_weight(weight)

    def codes(self) -> torch.Tensor:
        """The integer codes q ``[..., out, in]``: int8 in [-127, 127], or uint8 in [0, 15] (int4)."""
        return self.qweight if self.mode == "int8" else unpack_int4(self.qweight, self.in_features)

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W' = s q (int8), s q + m (int4) or s (q - 8) (symmetric int4), computed in float32,
        returned in ``dtype`` (default: the scales')."""
        return dequantize_rows(self, dict(self.named_buffers(recurse=False))).to(dtype or self.scales.dtype)

    def __getitem__(self, index: int) -> torch.Tensor:
        """W' of the matrix at leading index ``index`` (expert e of a stack), dequantizing only that one."""
        part = QuantizedWeight.__new__(QuantizedWeight)
        nn.Module.__init__(part)
        part.shape, part.mode, part.symmetric = self.shape[1:], self.mode, self.symmetric
        part.out_features, part.in_features, part.group_size = self.out_features, self.in_features, self.group_size
        for name, buffer in self.named_buffers(recurse=False):
            part.register_buffer(name, buffer[index])
        return part.dequantize()

    @property
    def dtype(self) -> torch.dtype:
        """The float dtype W' comes in (that of the scales)."""
        return self.scales.dtype

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}{', symmetric' * self.symmetric}" if self.mode == "int4" else ""
        return f"shape={list(self.shape)}, mode={self.mode}{group}, scale_dtype={self.scales.dtype}"


class QuantLinear(QuantizedWeight):
    """y = x W'^T + b with W' dequantized from ``qweight`` / ``scales`` (/ ``mins``) on every call."""

    def __init__(self, in_features: int, out_features: int, mode: str, group_size: int | None = 128, *,
                 bias: bool = False, scale_dtype: torch.dtype = torch.float32, device=None, symmetric: bool = False):
        super().__init__((out_features, in_features), mode, group_size, scale_dtype, device=device, symmetric=symmetric)
        self.bias = nn.Parameter(torch.empty(out_features, dtype=scale_dtype, device=device)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, mode: str, group_size: int | None, weight: torch.Tensor | None = None,
                    *, symmetric: bool = False) -> QuantLinear:
        """The quantized form of ``linear`` (of ``weight`` in its place, if given: a NormHead's normalised rows)."""
        weight = linear.weight if weight is None else weight
        module = cls(linear.in_features, linear.out_features, mode, group_size, bias=linear.bias is not None,
                     scale_dtype=weight.dtype, device=weight.device, symmetric=symmetric)
        module.set_weight(weight)
        if linear.bias is not None:
            module.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        return module

    @property
    def weight(self) -> torch.Tensor:
        """W', dequantized (for code that reads a linear layer's weight, e.g. absorbed MLA's ``up_weights``)."""
        return self.dequantize()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.dequantize(x.dtype), bias)


class QuantEmbedding(nn.Module):
    """E'[x]: the rows of a quantized table ``[vocab, d]``, each dequantized when looked up.

    ``table`` may be a tied head's ``QuantLinear``: then both use one stored copy.
    """

    def __init__(self, table: QuantizedWeight):
        super().__init__()
        self.table = table
        self.num_embeddings, self.embedding_dim = table.out_features, table.in_features

    @property
    def weight(self) -> torch.Tensor:
        return self.table.dequantize()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = self.table
        return dequantize_rows(t, {name: buffer[ids] for name, buffer in t.named_buffers(recurse=False)}).to(t.dtype)


def dequantize_rows(layout: QuantizedWeight, rows: dict[str, torch.Tensor]) -> torch.Tensor:
    """W' (float32) of stored tensors ``rows`` (``qweight``, ``scales``, ``mins``: all of a weight's,
    or some rows of them) laid out as ``layout`` says (mode, group size, symmetric)."""
    if layout.mode == "int8":
        return rows["qweight"].float() * rows["scales"].float().unsqueeze(-1)
    g, n = layout.group_size, layout.in_features
    q = unpack_int4(rows["qweight"], n).float()
    if layout.symmetric:
        return (q - 8) * expand_groups(rows["scales"], g, n)
    return q * expand_groups(rows["scales"], g, n) + expand_groups(rows["mins"], g, n)
