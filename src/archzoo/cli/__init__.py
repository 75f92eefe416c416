"""The ``archzoo`` command. Each subcommand lives in its own module under
``archzoo/cli/`` and registers itself in ``COMMANDS``: ``name -> module``.
A module provides ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from .argtypes import HelpFormatter
from .boundary import run_command

COMMANDS = {
    "list": "archzoo.cli.list_cmd",
    "params": "archzoo.cli.params_cmd",
    "show": "archzoo.cli.show_cmd",
    "compare": "archzoo.cli.compare_cmd",
    "import-config": "archzoo.cli.import_config_cmd",
    "mask": "archzoo.cli.mask_cmd",
    "generate": "archzoo.cli.generate_cmd",
    "chat": "archzoo.cli.chat_cmd",
    "train": "archzoo.cli.train_cmd",
    "eval": "archzoo.cli.eval_cmd",
    "bench": "archzoo.cli.bench_cmd",
}


def _load() -> dict:
    return {name: importlib.import_module(path) for name, path in COMMANDS.items()}


class Parser(argparse.ArgumentParser):
    """A bad flag ends in one line naming it (and where to read more), not the whole usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Every failure ends in one line and a non-zero exit (``boundary.py``), also Ctrl-C while torch imports."""
    return run_command(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    modules = _load()
    parser = Parser(prog="archzoo", description="A reference zoo of transformer architectures.")
    parser.add_argument("--version", action="version", version=f"archzoo {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in modules.items():
        doc = (module.__doc__ or "").strip().splitlines()
        command = sub.add_parser(
            name, help=doc[0] if doc else None, description=module.__doc__, formatter_class=HelpFormatter
        )
        module.add_arguments(command)
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # as typed: train --nproc passes it on to torchrun
    return modules[args.command].run(args) or 0
