"""``archzoo.quantize``: swap a model's float weights for int8 / int4 ones in place (``blocks/quant.py``).

What is quantized: every ``nn.Linear`` (attention projections, MLA's
``kv_b_proj`` too, dense MLPs, shared experts, the shared-expert gate) and
the stacked routed experts of every MoE layer. What stays float: norms,
biases, the router (a ``[E, d]`` gate whose scores pick experts: it is tiny
and a flipped choice costs more than its bytes save), the embedding unless
``embeddings=True``, and every module named in ``skip`` (default the output
head, whose errors land directly on the logits).

MLA's ``kv_b_proj`` is quantized like any linear; absorbed decoding reads it
per head through ``weight`` (``blocks/mla.py``'s ``up_weights``), which a
``QuantLinear`` dequantizes.

Tied heads: with the head skipped, the head still shares the (float)
embedding. With the head quantized and ``embeddings=True``, the embedding
becomes a ``QuantEmbedding`` reading the head's quantized table, one copy as
before. With the head quantized and the embedding kept float, the head gets
its own quantized copy (the tie is broken on purpose: the embedding stays
exact as asked). A Baichuan 2 NormHead is quantized as its normalised rows
(the weight its forward multiplies by), so the forward is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import nn

from ..blocks.experts import StackedExperts
from ..blocks.lora import LoRALinear
from ..blocks.norm_head import NormHead
from ..blocks.quant import BITS, QuantEmbedding, QuantizedWeight, QuantLinear
from ..blocks.quant_experts import QuantStackedExperts
from ..errors import InputError
from ..fast.quant import FastQuantLinear

LINEAR_KINDS = {"reference": QuantLinear, "fast": FastQuantLinear}
"""``implementation`` -> the quantized linear layer's class."""


def check_arguments(mode: str, group_size: int | None, skip) -> tuple[str, ...]:
    """Validate ``quantize``'s arguments (InputError naming the argument); returns ``skip`` as a tuple."""
    if mode not in BITS:
        raise InputError(f"mode: must be one of {', '.join(BITS)}, got {mode!r}")
    if group_size is not None and (not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1):
        raise InputError(f"group_size: must be a positive integer (input dims per int4 scale) or None (one group "
                         f"per row), got {group_size!r}")
    if isinstance(skip, str):
        skip = (skip,)
    if not isinstance(skip, Sequence) or not all(isinstance(name, str) and name for name in skip):
        raise InputError(f"skip: must be a sequence of module names (e.g. ('lm_head',)), got {skip!r}")
    return tuple(skip)


def _skipped(name: str, skip: tuple[str, ...]) -> bool:
    return any(name == s or name.endswith("." + s) or name.startswith(s + ".") for s in skip)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def conversion_targets(model: nn.Module, skip: tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    """The modules ``quantize`` converts (by path): linear layers and stacked experts not skipped."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if name and not _skipped(name, skip) and isinstance(m, (nn.Linear, StackedExperts))
    ]


def planned_weight_bytes(model: nn.Module, mode: str, group_size: int | None = 128, skip: Sequence[str] = ("lm_head",),
                         *, symmetric: bool = False) -> int:
    """``stored_weight_bytes`` of ``quantize(model, mode, group_size, skip, symmetric=)`` (embeddings float),
    worked out from the float model's shapes without converting anything (``model`` may be on meta)."""
    tensors = {id(p): p.numel() * p.element_size() for p in model.parameters()}
    embed_weight = getattr(getattr(model, "embed", None), "weight", None)
    for _, module in conversion_targets(model, check_arguments(mode, group_size, skip)):
        weights = [module.weight] if isinstance(module, nn.Linear) else [module.gate_up_proj, module.down_proj]
        for weight in weights:
            if weight is not embed_weight:  # a tied head quantized: the float embedding stays as well
                tensors.pop(id(weight), None)
            tensors[("quantized", id(weight))] = QuantizedWeight.storage_bytes(
                tuple(weight.shape), mode, group_size, weight.dtype, symmetric)
    return sum(tensors.values())


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantizedWeight) for m in model.modules())


def quantize(
    model: nn.Module,
    mode: str = "int8",
    group_size: int | None = 128,
    skip: Sequence[str] = ("lm_head",),
    *,
    embeddings: bool = False,
    symmetric: bool = False,
    implementation: str | None = None,
) -> nn.Module:
    """Quantize ``model``'s weights in place (see the module docstring) and return it.

    mode: ``"int8"`` (per output channel) or ``"int4"`` (groups of ``group_size`` input dims;
    a layer narrower than ``group_size`` has one group per row, and a last group may be
    shorter when ``group_size`` does not divide the width; None: one group per row).
    symmetric: int4 without minimums, W' = s (q - 8), s = max|w| / 7 per group (ChatGLM-6B's
    INT4 form; int8 is symmetric anyway). skip: module names or dotted
    ends of module paths left float. embeddings: quantize the token embedding too.
    implementation: ``"fast"`` (torch's packed int8 / int4 CPU kernels where they exist and
    agree, ``fast/quant.py``) or ``"reference"`` (dequantize and matmul, ``blocks/quant.py``);
    default: the model's own (``build_model(..., implementation=)``), else fast. Both store
    the same tensors and compute the same numbers up to float rounding.
    """
    skip = check_arguments(mode, group_size, skip)
    if implementation is None:
        implementation = getattr(model, "implementation", "fast")
    if implementation not in LINEAR_KINDS:
        raise InputError(f"implementation: must be one of {', '.join(LINEAR_KINDS)}, got {implementation!r}")
    linear_kind = LINEAR_KINDS[implementation]
    names = dict(model.named_modules())
    unknown = [s for s in skip if not any(_skipped(name, (s,)) for name in names if name)]
    if unknown:
        raise InputError(f"skip: {', '.join(map(repr, unknown))} names no module of this model")
    if is_quantized(model):
        raise InputError("model: already quantized (quantize a float model once)")
    if any(isinstance(m, LoRALinear) for m in names.values()):
        raise InputError("model: has LoRA adapters; merge_lora(model) (or drop them) before quantize")
    embed = getattr(model, "embed", None)
    head = getattr(model, "lm_head", None)
    tied = embed is not None and head is not None and head.weight is embed.weight
    for name, module in conversion_targets(model, skip):
        if isinstance(module, StackedExperts):
            _replace(model, name, QuantStackedExperts(module, mode, group_size, symmetric=symmetric))
        else:
            weight = F.normalize(module.weight.detach(), dim=-1, eps=1e-12) if isinstance(module, NormHead) else None
            _replace(model, name, linear_kind.from_linear(module, mode, group_size, weight, symmetric=symmetric))
    if embeddings and embed is not None and not _skipped("embed", skip):
        new_head = getattr(model, "lm_head", None)
        if tied and isinstance(new_head, QuantLinear):
            model.embed = QuantEmbedding(new_head)  # one stored table, as the float model had
        else:
            model.embed = QuantEmbedding(QuantizedWeight.from_weight(embed.weight.detach(), mode, group_size,
                                                                     symmetric=symmetric))
    model.quantization = {"mode": mode, "group_size": group_size if mode == "int4" else None,
                          "skip": list(skip), "embeddings": bool(embeddings)}
    if mode == "int4" and symmetric:  # recorded only when set: older folders and int8 read as before
        model.quantization["symmetric"] = True
    return model


def stored_weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights ``model`` holds: every parameter and every quantized tensor, each
    tensor once (a tied table is one); other buffers (position tables, router biases) are left
    out, as the float figures of ``estimate_memory`` leave them out."""
    tensors = {id(p): p for p in model.parameters()}
    for module in model.modules():
        if isinstance(module, QuantizedWeight):
            tensors.update({id(b): b for b in module.buffers(recurse=False)})
    return sum(t.numel() * t.element_size() for t in tensors.values())
