"""List every config under configs/ with its family, blocks and total parameters."""

from __future__ import annotations

import argparse
import difflib
import json

from ..config import config_paths, load_config
from ..errors import InputError
from ..inspect import count_params
from .table import format_table, human


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", help="only this family")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    configs = [(name, load_config(path)) for name, path in config_paths().items()]
    families = sorted({cfg.family for _, cfg in configs})
    if args.family and args.family not in families:
        near = difflib.get_close_matches(args.family, families, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise InputError(f"--family {args.family}: no such family; {hint}families: {', '.join(families)}")
    rows = []
    for name, cfg in configs:
        if args.family and cfg.family != args.family:
            continue
        total = count_params(cfg).total
        rows.append({"name": name, "family": cfg.family, "blocks": cfg.blocks_summary(), "total": total})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [[r["name"], r["family"], r["blocks"], r["total"], human(r["total"])] for r in rows]
    print(format_table(["name", "family", "blocks", "params", ""], table, align="lllrr"))
    return 0
