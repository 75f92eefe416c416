"""Print the module tree of a config with parameter shapes, and its layer plan."""

from __future__ import annotations

import argparse

from torch import nn

from ..fast import IMPLEMENTATIONS, reference_class
from ..models.decoder import build_model
from ..models.hf.config_json import CONFIG_ARGUMENT_HELP, load_any_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=CONFIG_ARGUMENT_HELP)
    parser.add_argument(
        "--all-layers", action="store_true", help="print every layer (plan and modules), not only distinct runs"
    )
    parser.add_argument(
        "--implementation",
        choices=IMPLEMENTATIONS,
        default="fast",
        help="which implementation to show the blocks of (default: fast, as build_model builds)",
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_any_config(args.name)
    model = build_model(cfg, device="meta", implementation=args.implementation)
    print(f"{cfg.name}  ({cfg.family}; {cfg.blocks_summary()})")
    if cfg.source:
        print(f"source: {cfg.source}")
    print("\nlayer plan:")
    for line in layer_plan_lines(cfg.layer_plan, args.all_layers):
        print(line)
    print("\nmodules (parameter shapes):")
    _print_tree(model, "", 1, args.all_layers)
    print(f"\nimplementation ({args.implementation}):")
    for line in implementation_lines(model):
        print(line)
    return 0


def implementation_lines(model: nn.Module) -> list[str]:
    """One line per block kind of ``model``: the class that computes it, and whether it is a fast form."""
    seen: dict[type, type] = {}
    for module in model.modules():
        seen.setdefault(reference_class(module), type(module))
    lines = []
    for reference, used in seen.items():
        if not reference.__module__.startswith("archzoo.blocks") and used is reference:
            continue  # containers (ModuleList, the model, its layers) and plain torch modules
        label = reference.__name__
        if used is reference:
            lines.append(f"  {label:28s} reference  ({reference.__module__})")
        else:
            lines.append(f"  {label:28s} fast       ({used.__module__}.{used.__name__})")
    return lines


def layer_plan_lines(plans, all_layers: bool = False) -> list[str]:
    """One line per run of consecutive layers with the same attention and MLP (every layer with all_layers)."""
    runs: list[list] = []
    for plan in plans:
        if runs and not all_layers and (runs[-1][-1].attention, runs[-1][-1].mlp) == (plan.attention, plan.mlp):
            runs[-1].append(plan)
        else:
            runs.append([plan])
    lines = []
    for run in runs:
        first, last = run[0].index, run[-1].index
        where = f"layer  {first:3d}" if first == last else f"layers {first:3d}..{last} ({len(run)} alike)"
        lines.append(f"  {where}: attention={run[0].attention} mlp={run[0].mlp}")
    return lines


def _print_tree(module: nn.Module, name: str, depth: int, all_layers: bool) -> None:
    pad = "  " * depth
    own = [f"{n} {list(p.shape)}" for n, p in module.named_parameters(recurse=False)]
    kind = reference_class(module).__name__  # the block; which form computes it is listed after the tree
    label = f"{name}: {kind}" if name else kind
    print(f"{pad}{label}" + (f"  [{', '.join(own)}]" if own else ""))
    seen: set[str] = set()
    children = list(module.named_children())
    for child_name, child in children:
        if isinstance(module, nn.ModuleList) and not all_layers:
            signature = repr(child)
            if signature in seen:
                continue
            same = [n for n, c in children if repr(c) == signature]
            seen.add(signature)
            if len(same) > 1:
                child_name = f"{same[0]}..{same[-1]} ({len(same)} alike)" if _consecutive(same) else ",".join(same)
        _print_tree(child, child_name, depth + 1, all_layers)


def _consecutive(names: list[str]) -> bool:
    idx = [int(n) for n in names]
    return idx == list(range(idx[0], idx[0] + len(idx)))
