"""List every config under configs/ with its family, blocks and total parameters."""

from __future__ import annotations

import argparse
import json

from ..config import config_paths, load_config
from ..inspect import count_params
from .table import format_table, human


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--family", help="only this family")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    rows = []
    for name, path in config_paths().items():
        cfg = load_config(path)
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
