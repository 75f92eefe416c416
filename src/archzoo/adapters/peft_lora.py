"""LoRA adapters <-> PEFT's files: ``adapter_config.json`` + ``adapter_model.safetensors``.

PEFT names an adapter of the Hugging Face module ``model.layers.0.self_attn.q_proj``
``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` (``[r, in]``) and
``...lora_B.weight`` (``[out, r]``), scaled by ``lora_alpha / r`` (``rank_pattern`` /
``alpha_pattern`` override both per module; ``use_rslora`` divides by sqrt(r)).

Fused checkpoint projections (BLOOM's and ChatGLM's ``query_key_value``, Qwen v1's
``c_attn``): archzoo keeps q, k, v apart, each with its own adapter, while PEFT
puts one adapter on the fused linear layer. Adapters on parts j of the fused
weight (ranks r_j, scalings s_j) are exactly one PEFT adapter of rank R = sum r_j:

    A = [A_q; A_v]                        ([R, in]: the parts' A stacked)
    B rows of part j = [0 .. s_j/s B_j .. 0]   (B_j in part j's columns, zero elsewhere;
                                           the rows placed by the rule's own ``fuse``)

with scaling s = s of the first part (written as ``alpha_pattern`` = s R, ``rank_pattern`` = R).
So every combination of q / k / v adapters *is* expressible, and the logits agree.
What the format cannot say, and why:

* the block structure. To PEFT the exported adapter is one rank-R LoRA; training
  it further in PEFT fills the zero blocks (k gets an update, q's rows use v's
  columns): the model that "adapts q and v only, rank r each" is not a
  constraint PEFT can keep. Loading back, archzoo recovers the parts from the
  file's ``archzoo_parts`` metadata (or, for a PEFT-made file, by dropping the
  columns of each part's B that are zero; a part whose rows are all zero gets
  no adapter), each part getting its own copy of the shared A rows;
* dropout. PEFT draws one dropout mask for the fused adapter's input, archzoo one
  per projection: equal in evaluation, different random draws in training.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter

import torch
from torch import nn

from ..blocks.experts import StackedExperts
from ..blocks.lora import LoRALinear
from ..errors import CheckpointError, InputError
from ..models.hf.family import UnsupportedConfig
from .hf_names import HFTarget, family_of_model, hf_target, our_modules
from .lora import freeze_all_but_adapters, lora_layers, match_implementation, replace_module

PEFT_PREFIX = "base_model.model."
PARTS_METADATA = "archzoo_parts"


def _peft_alpha(scaling: float, rank: int, rslora: bool) -> float:
    """The lora_alpha that gives ``scaling`` at ``rank``."""
    return scaling * (math.sqrt(rank) if rslora else rank)


def lora_to_peft(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    """(adapter_config, tensors, safetensors metadata) of the model's LoRA adapters."""
    layers = lora_layers(model)
    if not layers:
        raise InputError("model: has no LoRA adapters to save (add_lora first)")
    if len({layer.rslora for layer in layers.values()}) > 1:
        raise UnsupportedConfig("save_adapter: some adapters use rsLoRA and some do not; PEFT's use_rslora is one flag")
    rslora = next(iter(layers.values())).rslora
    family, cfg = family_of_model(model)
    rules = family.rules(cfg)
    plain: dict[str, LoRALinear] = {}
    fused: dict[str, dict[int, LoRALinear]] = {}
    targets: dict[str, HFTarget] = {}
    for name, layer in layers.items():
        target = hf_target(name, rules)
        if target.rule is None:
            plain[target.module] = layer
        else:
            fused.setdefault(target.module, {})[target.part] = layer
            targets[target.module] = target
    # one tensor pair, rank and scaling per checkpoint module
    entries: dict[str, tuple[torch.Tensor, torch.Tensor, int, float]] = {}
    parts_meta: dict[str, list[list[int]]] = {}
    for module, layer in plain.items():
        entries[module] = (layer.lora_A.weight, layer.lora_B.weight, layer.rank, layer.scaling)
    for module, parts in fused.items():
        target = targets[module]
        part_modules = target.part_modules()
        order = sorted(parts)
        rank = sum(parts[j].rank for j in order)
        scaling = parts[order[0]].scaling
        a = torch.cat([parts[j].lora_A.weight for j in order])
        like = parts[order[0]].lora_B.weight
        blocks, offset, meta = [], 0, []
        for j, part_module in enumerate(part_modules):
            out = model.get_submodule(part_module).out_features
            block = like.new_zeros(out, rank)
            if j in parts:
                layer = parts[j]
                ratio = layer.scaling / scaling
                block[:, offset : offset + layer.rank] = layer.lora_B.weight * ratio if ratio != 1 else layer.lora_B.weight
                meta.append([j, offset, layer.rank])
                offset += layer.rank
            blocks.append(block)
        entries[module] = (a, target.rule.fuse(blocks, cfg), rank, scaling)
        parts_meta[module] = meta
    tensors = {}
    for module, (a, b, _, _) in entries.items():
        tensors[f"{PEFT_PREFIX}{module}.lora_A.weight"] = a.detach().contiguous().cpu()
        tensors[f"{PEFT_PREFIX}{module}.lora_B.weight"] = b.detach().contiguous().cpu()
    r, alpha = Counter((rank, _peft_alpha(s, rank, rslora)) for _, _, rank, s in entries.values()).most_common(1)[0][0]
    rank_pattern, alpha_pattern = {}, {}
    for module, (_, _, rank, s) in entries.items():
        if rank != r:
            rank_pattern[re.escape(module)] = rank
        if not math.isclose(_peft_alpha(s, rank, rslora), alpha, rel_tol=0, abs_tol=0):
            alpha_pattern[re.escape(module)] = _peft_alpha(s, rank, rslora)
    dropouts = Counter(getattr(layer.lora_dropout, "p", 0.0) for layer in layers.values())
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": getattr(cfg, "name", None),
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": dropouts.most_common(1)[0][0],
        "target_modules": _target_modules(model, rules, set(entries)),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": rslora,
        "use_dora": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    metadata = {"format": "pt", "archzoo_architecture": family.architecture, PARTS_METADATA: json.dumps(parts_meta)}
    return config, tensors, metadata


def _target_modules(model: nn.Module, rules, adapted: set[str]) -> list[str]:
    """PEFT's ``target_modules``: the adapted modules' last names if those pick exactly the
    adapted modules among all the checkpoint's linear layers, else their full paths."""
    every = set()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name:
            try:
                every.add(hf_target(name, rules).module)
            except UnsupportedConfig:
                continue
    short = sorted({m.rsplit(".", 1)[-1] for m in adapted})
    picked = {m for m in every if m.rsplit(".", 1)[-1] in short}
    return short if picked == adapted else sorted(adapted)


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's rule: a pattern matches a module path ending in it (``(.*\\.)?pattern$``)."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", module):
            return value
    return default


def check_peft_config(config: dict, where: str) -> None:
    """Refuse the LoRA variants archzoo does not implement, naming the field."""
    refusals = {
        "use_dora": (False, "DoRA (use_dora = true) is not implemented"),
        "fan_in_fan_out": (False, "fan_in_fan_out = true (GPT-2 Conv1D weights) has no archzoo layer"),
        "bias": ("none", "trained biases (bias != \"none\") are not implemented"),
        "modules_to_save": (None, "modules_to_save (fully trained copies of modules) is not implemented"),
    }
    for field, (ok, why) in refusals.items():
        value = config.get(field, ok)
        if value != ok and not (field == "modules_to_save" and not value):
            raise UnsupportedConfig(f"{where}: {field} = {value!r}: {why}")


def lora_from_peft(model: nn.Module, config: dict, tensors: dict[str, torch.Tensor], metadata: dict, where: str) -> list[str]:
    """Attach (or fill) the LoRA adapters a PEFT folder holds; returns our adapted module paths."""
    check_peft_config(config, where)
    family, cfg = family_of_model(model)
    rules = family.rules(cfg)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        body = key.removeprefix(PEFT_PREFIX)
        for side in ("lora_A", "lora_B"):
            suffix = f".{side}.weight"
            if body.endswith(suffix):
                pairs.setdefault(body.removesuffix(suffix), {})[side] = tensor
                break
        else:
            raise CheckpointError(f"{where}: tensor {key!r} is not a LoRA A or B weight (only those are supported)")
    parts_meta = json.loads(metadata.get(PARTS_METADATA, "{}")) if metadata else {}
    rslora = bool(config.get("use_rslora", False))
    dropout = float(config.get("lora_dropout", 0.0) or 0.0)
    adapted = []
    existing = lora_layers(model)
    for hf_module, pair in sorted(pairs.items()):
        if set(pair) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"{where}: {hf_module} has {sorted(pair)} but needs both lora_A and lora_B")
        a, b = pair["lora_A"], pair["lora_B"]
        rank = a.shape[0]
        if b.shape[1] != rank:
            raise CheckpointError(f"{where}: {hf_module}: lora_A is {list(a.shape)} but lora_B is {list(b.shape)} (ranks differ)")
        alpha = float(_pattern_value(config.get("alpha_pattern") or {}, hf_module, config.get("lora_alpha", 8)))
        scaling = alpha / (math.sqrt(rank) if rslora else rank)
        ours, rule = our_modules(hf_module, rules)
        if rule is None:
            pieces = [(ours[0], a, b)]
        else:
            pieces = _split_fused(ours, rule.split(b, cfg), a, parts_meta.get(hf_module))
        for module, part_a, part_b in pieces:
            part_rank = part_a.shape[0]
            part_alpha = _peft_alpha(scaling, part_rank, rslora)
            _attach(model, existing, module, part_a, part_b, part_rank, part_alpha, dropout, rslora, where)
            adapted.append(module)
    freeze_all_but_adapters(model)
    match_implementation(model)
    return adapted


def _split_fused(ours: list[str], b_parts, a: torch.Tensor, meta) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """The per-projection adapters of one fused adapter (see the module docstring)."""
    if meta is not None:
        return [(ours[j], a[start : start + rank], b_parts[j][:, start : start + rank]) for j, start, rank in meta]
    if all(not bool(part.any()) for part in b_parts):  # untrained (B = 0): every part keeps the whole adapter
        return [(module, a, part) for module, part in zip(ours, b_parts)]
    pieces = []
    for module, part in zip(ours, b_parts):
        columns = part.abs().sum(0) != 0
        if bool(columns.any()):
            pieces.append((module, a[columns], part[:, columns]))
    return pieces


def _attach(model, existing, module, a, b, rank, alpha, dropout, rslora, where) -> None:
    try:
        base = model.get_submodule(module)
    except AttributeError as err:
        raise CheckpointError(f"{where}: the adapter names {module}, which this model does not have") from err
    layer = existing.get(module)
    if layer is None:
        if isinstance(base, StackedExperts):
            raise UnsupportedConfig(
                f"{where}: {module} holds stacked routed experts; LoRA on them (PEFT's target_parameters) is not supported"
            )
        if not isinstance(base, nn.Linear):
            raise CheckpointError(f"{where}: {module} is not a linear layer")
        layer = LoRALinear(base, rank, alpha, dropout, rslora=rslora)
        replace_module(model, module, layer)
    elif layer.rank != rank:
        raise CheckpointError(f"{where}: {module} has a rank-{layer.rank} adapter; the file holds rank {rank}")
    if tuple(a.shape) != tuple(layer.lora_A.weight.shape) or tuple(b.shape) != tuple(layer.lora_B.weight.shape):
        raise CheckpointError(
            f"{where}: {module}: lora_A {list(a.shape)} / lora_B {list(b.shape)} do not fit a rank-{rank} adapter of "
            f"{list(layer.weight.shape)}"
        )
    with torch.no_grad():
        layer.lora_A.weight.copy_(a)
        layer.lora_B.weight.copy_(b)
    layer.alpha, layer.scaling = float(alpha), alpha / (math.sqrt(rank) if rslora else rank)
