"""The CLI boundary: every failure ends in one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import archzoo
from archzoo import memory_guard
from archzoo.cli import main
from archzoo.cli.boundary import run_command
from archzoo.errors import CheckpointError


def _raise(err):
    def command():
        raise err
    return command


@pytest.mark.parametrize(
    ("err", "code", "says"),
    [
        (CheckpointError("ckpt/model.safetensors: truncated"), 2, "archzoo: ckpt/model.safetensors: truncated"),
        (KeyboardInterrupt(), 130, "archzoo: interrupted"),
        (MemoryError(), 1, "out of memory"),
        (PermissionError(13, "Permission denied", "/root/x.png"), 1, "archzoo: /root/x.png: Permission denied"),
        (TypeError("unsupported format string\npassed to NoneType"), 70, "internal error TypeError: unsupported format string passed"),
    ],
)
def test_each_failure_is_one_line_and_an_exit_code(capsys, err, code, says):
    assert run_command(_raise(err)) == code
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and says in err_text, err_text


def test_archzoo_traceback_shows_the_bug(monkeypatch):
    monkeypatch.setenv("ARCHZOO_TRACEBACK", "1")
    with pytest.raises(TypeError):
        run_command(_raise(TypeError("bug")))


def test_generate_on_a_corrupt_folder_is_one_line(tmp_path, capsys):
    folder = archzoo.save_pretrained(archzoo.build_model(archzoo.load_config("llama-tiny")), tmp_path / "ckpt")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert main(["generate", str(folder), "--prompt-ids", "1,2", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{folder}/model.safetensors" in err[0] and "truncated or corrupt" in err[0]


def test_piping_into_head_ends_quietly():
    """``python -m archzoo params llama-tiny | head -1`` after head has left: its pipe's read end is closed
    before the command starts, so the first write fails with EPIPE every time (a real ``head`` may still be
    reading when a short output arrives, and then nothing breaks). No BrokenPipeError traceback, nothing
    on stderr, exit 141 = 128 + SIGPIPE, as a shell tool killed by the pipe ends. Also the one real run of
    the ``python -m archzoo`` entry point."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run(
            [sys.executable, "-m", "archzoo", "params", "llama-tiny"], stdout=write_end, stderr=subprocess.PIPE,
            env=env, text=True, timeout=120,
        )
    finally:
        os.close(write_end)
    assert (out.returncode, out.stderr) == (141, "")


# ---- memory ----

def test_available_memory_takes_the_cgroup_limit(tmp_path, monkeypatch):
    (tmp_path / "max").write_text("1000000\n")
    (tmp_path / "current").write_text("400000\n")
    monkeypatch.setattr(memory_guard, "CGROUP_FILES", ((str(tmp_path / "max"), str(tmp_path / "current")),))
    # MemAvailable is pinned: the machine's own figure changes between two reads
    monkeypatch.setattr(memory_guard, "_meminfo_available", lambda: 5_000_000)
    assert memory_guard.available_bytes() == 600_000  # the cgroup leaves less than MemAvailable
    (tmp_path / "max").write_text("max\n")
    assert memory_guard.available_bytes() == 5_000_000  # no cgroup limit: MemAvailable decides


def test_generate_refuses_a_model_larger_than_memory_and_force_overrides(monkeypatch, capsys):
    cfg = archzoo.load_config("llama-tiny")
    need = archzoo.estimate_memory(cfg, batch=1, seq_len=3 + 2, dtype="fp32").inference_bytes
    monkeypatch.setattr(memory_guard, "available_bytes", lambda: int(need) - 1)
    assert main(["generate", "llama-tiny", "--prompt-ids", "1,2,3", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert "llama-tiny" in err and "needs about" in err and "--force" in err and err.count("\n") == 1
    torch.manual_seed(0)
    assert main(["generate", "llama-tiny", "--prompt-ids", "1,2,3", "--max-new-tokens", "2", "--force"]) == 0


@pytest.mark.parametrize(
    "argv",
    [
        ["mask", "glm", "--length", "200000"],
        ["compare", "--blocks", "mlp:swiglu,gelu", "--d-model", "100000"],
        ["train", "llama-7b", "--steps", "1"],
        ["generate", "llama3-8b", "--prompt-ids", "1", "--max-new-tokens", "1"],
    ],
)
def test_commands_refuse_what_does_not_fit(monkeypatch, capsys, argv):
    monkeypatch.setattr(memory_guard, "available_bytes", lambda: 16 * 10**9)  # a 16 GB machine, whatever this one has
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "16.0 GB is available" in err and err.count("\n") == 1, err
