"""Adding LoRA adapters to a model by target names, merging and unmerging them.

A target names linear layers by the end of their module path: ``"q_proj"``
adapts every ``layers.{i}.attn.q_proj``; ``"shared_experts.down_proj"`` or
``"layers.0.attn.q_proj"`` are more precise. Everything that is not an adapter
is frozen, so an optimizer over ``model.parameters()`` with ``requires_grad``
trains only the adapters.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

from torch import nn

from ..blocks.experts import StackedExperts
from ..blocks.lora import LoRALinear
from ..blocks.mla import MultiHeadLatentAttention
from ..errors import InputError
from ..models.hf.family import UnsupportedConfig

DEFAULT_TARGETS = ("q_proj", "v_proj")


def name_matches(name: str, target: str) -> bool:
    """``target`` is the whole module path or its last dotted parts."""
    return name == target or name.endswith("." + target)


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every LoRA layer of ``model`` by module path."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def linear_names(model: nn.Module) -> list[str]:
    """The distinct last names of the model's linear layers (what ``targets`` may say)."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear) and name})


def _refusal(model: nn.Module, name: str, module: nn.Linear) -> str | None:
    """Why a linear layer cannot take a LoRA adapter (None: it can)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, MultiHeadLatentAttention) and child == "kv_b_proj":
        return (
            f"{name}: absorbed MLA does not call kv_b_proj as a linear layer (it multiplies by W_UK and W_UV "
            "per head, blocks/mla.py), so a LoRA update there would be skipped; target q_proj / q_a_proj / "
            "q_b_proj / kv_a_proj / o_proj instead"
        )
    embed = getattr(model, "embed", None)
    if embed is not None and module.weight is getattr(embed, "weight", None):
        return f"{name}: its weight is tied to the embedding (tie_embeddings); merging would change the embedding too"
    return None


def resolve_targets(model: nn.Module, targets: Sequence[str] | str) -> list[str]:
    """Module paths of the linear layers ``targets`` name; clear errors for names that match nothing."""
    if isinstance(targets, str):
        targets = [t for t in targets.split(",") if t]
    if not targets:
        raise InputError("targets: name at least one linear layer (e.g. q_proj, v_proj)")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear) and name}
    stacked = [f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, StackedExperts) for p in ("gate_up_proj", "down_proj")]
    chosen: list[str] = []
    for target in targets:
        found = [name for name in linears if name_matches(name, target)]
        experts = [name for name in stacked if name_matches(name, target)]
        if experts and not found:
            raise UnsupportedConfig(
                f"targets: {target!r} names stacked routed-expert weights ({experts[0]}, [n_experts, out, in]), "
                "not linear layers; LoRA on routed experts is not supported (PEFT's format has no per-expert "
                "adapter for stacked tensors that transformers would load the same way); target the attention "
                "projections, dense MLPs or shared experts"
            )
        if experts:
            warnings.warn(
                f"LoRA target {target!r}: the routed experts' stacked {target} tensors are not adapted "
                f"({len(experts)} of them); only linear layers are",
                stacklevel=3,
            )
        if not found:
            raise InputError(
                f"targets: {target!r} matches no linear layer of {getattr(model.config, 'name', 'this model')}; "
                f"linear layers are named: {', '.join(linear_names(model))}"
            )
        chosen.extend(name for name in found if name not in chosen)
    return chosen


def add_lora(
    model: nn.Module,
    rank: int = 8,
    alpha: float = 16,
    targets: Sequence[str] | str = DEFAULT_TARGETS,
    dropout: float = 0.0,
    *,
    rslora: bool = False,
) -> nn.Module:
    """Wrap the target linear layers in ``LoRALinear`` (in place) and freeze everything else.

    rank: r (> 0). alpha: the update is scaled by alpha / r (alpha / sqrt(r) with ``rslora``).
    targets: linear layer names (``q_proj``, ``v_proj``, ``o_proj``, ``gate_proj``, ...), or
    dotted ends of module paths. dropout: on the adapter's input while training.
    Returns ``model``.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise InputError(f"rank: must be a positive integer, got {rank!r}")
    if not isinstance(alpha, (int, float)) or not alpha > 0:
        raise InputError(f"alpha: must be a positive number, got {alpha!r}")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise InputError(f"dropout: must be in [0, 1), got {dropout!r}")
    names = resolve_targets(model, targets)
    existing = lora_layers(model)
    for name in names:
        if name in existing:
            raise InputError(f"targets: {name} already has a LoRA adapter")
        module = model.get_submodule(name)
        reason = _refusal(model, name, module)
        if reason:
            raise UnsupportedConfig(f"targets: {reason}")
        if min(module.in_features, module.out_features) < rank:
            warnings.warn(f"LoRA rank {rank} >= a side of {name} ({module.out_features} x {module.in_features})", stacklevel=2)
    for name in names:
        replace_module(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout, rslora=rslora))
    freeze_all_but_adapters(model)
    match_implementation(model)
    return model


def match_implementation(model: nn.Module) -> None:
    """New adapter blocks take the model's implementation (``fast/lora.py`` on a ``"fast"`` model)."""
    implementation = getattr(model, "implementation", None)
    if implementation is not None:
        from ..fast import use_implementation

        use_implementation(model, implementation)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def adapter_parameter_names(model: nn.Module) -> list[str]:
    """Names of LoRA and prefix parameters (what trains)."""
    return [name for name, _ in model.named_parameters() if is_adapter_parameter(name)]


def is_adapter_parameter(name: str) -> bool:
    return ".lora_A." in name or ".lora_B." in name or name.startswith("prefix.")


def freeze_all_but_adapters(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(is_adapter_parameter(name))


def base_state_dict(model: nn.Module) -> dict:
    """The model's own weights for ``save_pretrained``: merged adapters are in them, and their
    A and B are left out; unmerged adapters and prefixes are an error (a checkpoint cannot hold them)."""
    unmerged = [name for name, layer in lora_layers(model).items() if not layer.merged]
    if unmerged or getattr(model, "prefix", None) is not None:
        what = f"unmerged LoRA adapters ({unmerged[0]}, ...)" if unmerged else "a P-tuning prefix"
        raise InputError(
            f"save_pretrained: the model has {what}; save_adapter(model, folder) writes them in PEFT's format"
            + (", or merge_lora(model) first to save the merged weights" if unmerged else "")
        )
    return {key: value for key, value in model.state_dict().items() if not is_adapter_parameter(key)}


def _layers_or_error(model: nn.Module) -> Iterable[LoRALinear]:
    layers = lora_layers(model).values()
    if not layers:
        raise InputError("model: has no LoRA adapters (add_lora or load_adapter first)")
    return layers


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, W <- W + (alpha / r) B A (in place; undo with ``unmerge_lora``)."""
    for layer in _layers_or_error(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """Subtract every merged adapter again, W <- W - (alpha / r) B A."""
    for layer in _layers_or_error(model):
        layer.unmerge()
    return model
