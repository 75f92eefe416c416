"""The README's code blocks run as written: every python block executes (in order, in
a temporary folder), the TOML example is a valid config, and every ``archzoo ...``
line of the bash blocks parses with the real command's flags."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from archzoo.cli import COMMANDS, Parser
from archzoo.config import Config

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```", README.read_text(encoding="utf-8"), flags=re.S | re.M)
# a block that needs a real checkpoint folder (a tokenizer to read) cannot run here; tests/text covers it
NEEDS_A_CHECKPOINT = "path/to/hf-checkpoint/"


def test_every_python_block_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = [code for lang, code in BLOCKS if lang == "python"]
    runnable = [code for code in blocks if NEEDS_A_CHECKPOINT not in code]
    assert len(blocks) - len(runnable) <= 1 and len(runnable) >= 3
    namespace: dict = {}
    for code in runnable:
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert namespace["new"].shape[0] == 1 and Path("out/config.json").is_file()


def test_the_toml_example_is_a_valid_config():
    (toml,) = [code for lang, code in BLOCKS if lang == "toml"]
    cfg = Config.from_dict(tomllib.loads(toml), source="README.md")
    assert cfg.name == "llama2-70b" and cfg.mlp_hidden == 28672


def _parser() -> Parser:
    parser = Parser(prog="archzoo")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, path in COMMANDS.items():
        importlib.import_module(path).add_arguments(sub.add_parser(name))
    return parser


COMMAND_LINES = [
    line.split("#")[0].strip()
    for lang, code in BLOCKS
    if lang == "bash"
    for line in code.splitlines()
    if line.strip().startswith("archzoo ")
]


@pytest.mark.parametrize("line", COMMAND_LINES)
def test_every_archzoo_command_line_parses(line):
    _parser().parse_args(shlex.split(line)[1:])  # an unknown command or flag exits with an error
