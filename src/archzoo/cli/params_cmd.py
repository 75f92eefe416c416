"""Exact parameter counts of a config (nothing is allocated)."""

from __future__ import annotations

import argparse
import json

from ..config import load_config
from ..inspect import count_params
from .table import format_table, human


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="config name (see `archzoo list`) or path to a .toml file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.name)
    report = count_params(cfg)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    rows = [
        ["total", report.total, human(report.total)],
        ["embedding", report.embedding, human(report.embedding)],
        ["non-embedding", report.non_embedding, human(report.non_embedding)],
    ]
    print(f"{cfg.name}  ({cfg.family}; {cfg.blocks_summary()})")
    print(format_table(["", "params", ""], rows, align="lrr"))
    if cfg.model.tie_embeddings:
        print("output head tied to the input embedding: counted once")
    return 0
