"""Every command, given each kind of bad argument, exits non-zero with one line naming
the flag, and no traceback. ``train``'s own flags are tested with the training loop."""

from __future__ import annotations

import argparse

import pytest

from archzoo.cli import COMMANDS, main
from archzoo.cli.argtypes import HelpFormatter, dtype_name

BAD = [
    # (argv, what the one line must name)
    (["params", "llama-tiny", "--seq-len", "0"], "--seq-len"),
    (["params", "llama-tiny", "--seq-len", "-5"], "--seq-len"),
    (["params", "llama-tiny", "--seq-len", "abc"], "--seq-len"),
    (["params", "llama-tiny", "--batch", "0"], "--batch"),
    (["params", "llama-tiny", "--dtype", "bfloat17"], "--dtype"),
    (["params", "no-such-config"], "no-such-config"),
    (["params", "/nonexistent/x.toml"], "x.toml"),
    (["show", "no-such"], "no-such"),
    (["list", "--family", "mistral"], "mistral"),
    (["compare", "--head-dim", "-8", "--blocks", "attention:mha"], "--head-dim"),
    (["compare", "--blocks", "attention:,,"], "--blocks"),
    (["compare", "--blocks", "attention:"], "--blocks"),
    (["compare", "--blocks", "bogus:x"], "--blocks"),
    (["compare", "--blocks", "attention:mha,bogus"], "--blocks"),
    (["compare", "--seq-len", "0", "llama-tiny"], "--seq-len"),
    (["compare", "--batch", "0", "llama-tiny"], "--batch"),
    (["compare", "--d-model", "0", "--blocks", "norm:rmsnorm"], "--d-model"),
    (["compare", "--n-heads", "0", "--blocks", "attention:mha"], "--n-heads"),
    (["compare", "--n-kv-heads", "-1", "--blocks", "attention:gqa"], "--n-kv-heads"),
    (["compare", "--hidden", "-4", "--blocks", "mlp:gelu"], "--hidden"),
    (["compare", "--kv-lora-rank", "-4", "--blocks", "attention:mla"], "--kv-lora-rank"),
    (["compare", "--q-lora-rank", "-4", "--blocks", "attention:mla"], "--q-lora-rank"),
    (["compare", "--repeats", "0", "--blocks", "norm:rmsnorm"], "--repeats"),
    (["compare"], "config names"),
    (["mask", "glm", "--length", "0"], "--length"),
    (["mask", "glm", "--length", "6", "--spans", "x"], "--spans"),
    (["mask", "glm", "--length", "6", "--spans", "5:2"], "--spans"),
    (["mask", "glm", "--length", "6", "--png", "/proc/no-such-dir/x.png"], "--png"),
    (["mask", "chatglm", "--prompt-length", "-1"], "--prompt-length"),
    (["mask", "chatglm", "--prompt-length", "2", "--generated", "-1"], "--generated"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--max-new-tokens", "2.5"], "--max-new-tokens"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--temperature", "nan"], "--temperature"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--temperature", "inf"], "--temperature"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--temperature", "-1"], "--temperature"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--top-k", "0"], "--top-k"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--top-p", "0"], "--top-p"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--top-p", "nan"], "--top-p"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--eos-id", "-4"], "--eos-id"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--eos-id", "99999"], "--eos-id"),
    (["generate", "llama-tiny", "--prompt-ids", "1,2", "--threads", "0"], "--threads"),
    (["generate", "llama-tiny", "--prompt-ids", "99999"], "--prompt-ids"),
    (["generate", "no-such", "--prompt-ids", "1"], "no-such"),
    (["generate", "llama-tiny", "--prompt", "hi", "--tokenizer", "/nonexistent-tok"], "nonexistent-tok"),
    (["chat", "/nonexistent-folder"], "nonexistent-folder"),
    (["chat", "llama-tiny", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["chat", "llama-tiny", "--top-p", "2"], "--top-p"),
    (["bench", "llama-tiny", "--new-tokens", "-1"], "--new-tokens"),
    (["bench", "llama-tiny", "--batch", "0"], "--batch"),
    (["bench", "llama-tiny", "--seq-len", "0"], "--seq-len"),
    (["bench", "llama-tiny", "--repeats", "0"], "--repeats"),
    (["bench", "llama-tiny", "--dtype", "bf17"], "--dtype"),
    (["bench", "llama-tiny", "--threads", "-2"], "--threads"),
    (["nosuchcommand"], "nosuchcommand"),
]


@pytest.mark.parametrize("argv, names", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_argument_exits_non_zero_with_one_line(argv, names, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses the value before the command runs
        code = exit_.code
    out, err = capsys.readouterr()
    assert code not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert names in lines[0] and "Traceback" not in err


@pytest.mark.parametrize("command", ["bench", "generate", "chat", "params", "compare", "mask", "show", "list"])
def test_every_flag_has_a_help_line_that_shows_its_default(command, capsys):
    parser = argparse.ArgumentParser(prog=f"archzoo {command}", formatter_class=HelpFormatter)
    __import__(COMMANDS[command], fromlist=["add_arguments"]).add_arguments(parser)
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest}: no help line"
        if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            shown = parser._get_formatter()._expand_help(action) if "%(default)" in action.help else None
            text = HelpFormatter(parser.prog)._get_help_string(action)
            assert "default" in (shown or text), f"{command} {action.option_strings}: default not shown"


@pytest.mark.parametrize("command", ["compare", "mask", "generate", "chat"])
def test_help_keeps_the_examples_line_breaks(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    doc = __import__(COMMANDS[command], fromlist=["x"]).__doc__
    example = next(line for line in doc.splitlines() if line.strip().startswith("archzoo "))
    assert example.rstrip() in out.splitlines()  # the line as written, not re-wrapped into a paragraph


def test_dtype_is_spelled_one_way_and_accepts_the_long_names(capsys):
    assert dtype_name("bfloat16") == dtype_name("bf16") == "bf16"
    assert main(["params", "llama-tiny", "--dtype", "bfloat16", "--json"]) == 0
    assert '"dtype": "bf16"' in capsys.readouterr().out
    for command in (["bench", "llama-tiny"], ["params", "llama-tiny"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        assert "bfloat16}" not in capsys.readouterr().out  # choices listed once, short names


def test_version(capsys):
    """(``python -m archzoo`` runs for real in test_boundary.py's pipe test.)"""
    from archzoo import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"archzoo {__version__}"
