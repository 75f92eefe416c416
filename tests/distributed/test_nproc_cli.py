"""``archzoo train --nproc``: the launcher end to end, and every refusal before any process starts."""

from __future__ import annotations

import sys

import pytest
from spawn import run_in_own_session

from archzoo.cli import main
from archzoo.train.distributed.launch import strip_nproc, torchrun_command
from archzoo.train.log import read_log


def test_nproc_2_trains_through_torchrun_and_reports_once(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "archzoo", "train", "llama-tiny", "--nproc", "2", "--steps", "5", "--batch", "4",
               "--seq-len", "16", "--warmup", "1", "--eval-batches", "1", "--out", str(out), "--no-progress",
               "--sample-tokens", "8"]  # fmt: skip
    output = run_in_own_session(command, timeout=240)
    assert output.count("archzoo train llama-tiny:") == 1 and output.count("run folder:") == 1  # rank 0 alone prints
    records = read_log(out / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[1]["world_size"] == 2 and "per process" in output and "(estimate_memory, fp32, 2 processes)" in output
    assert (out / "checkpoints" / "step-000005" / ".metadata").is_file() and (out / "model" / "config.json").is_file()


def test_the_command_torchrun_gets():
    argv = ["train", "llama-tiny", "--nproc", "2", "--steps", "5", "--nproc=3"]
    assert strip_nproc(argv) == ["train", "llama-tiny", "--steps", "5"]
    assert torchrun_command(["train", "x"], 4)[1:] == [
        "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "archzoo", "train", "x",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--nproc", "0"], "--nproc: must be >= 1 processes, got 0"),
        (["--nproc", "4", "--batch", "6"], "--batch: 6 sequences do not split over --nproc 4 processes"),
        (["--nproc", "2", "--prefix", "4"], "--prefix: P-tuning v2 cannot be sharded over --nproc 2"),
        (["--nproc", "2", "--lr", "-1"], "lr: must be a finite number >= 0"),
    ],
)
def test_bad_nproc_runs_are_refused_before_any_process_starts(flags, message, capsys, tmp_path):
    assert main(["train", "llama-tiny", "--out", str(tmp_path / "r"), *flags]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_on_n_processes_checks_the_run_folder(capsys, tmp_path):
    assert main(["train", "--resume", str(tmp_path), "--nproc", "2"]) != 0
    assert "no run.json" in capsys.readouterr().err


def test_nproc_inside_torchrun_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "llama-tiny", "--nproc", "2"]) != 0
    assert "--nproc: this process is one of torchrun's (WORLD_SIZE=2); drop --nproc" in capsys.readouterr().err
