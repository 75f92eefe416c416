"""``archzoo train --lora`` / ``--prefix``: only the adapters train, the run folder ends with a
PEFT-format adapter, resume is bit-exact, and bad flags are clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import archzoo
from archzoo.cli import main
from archzoo.train import TrainSettings, resume, train
from archzoo.train.adapter_methods import LoRATraining, PrefixTraining, parse_lora

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 12
QUICK = ["--batch", "2", "--seq-len", "16", "--warmup", "2", "--eval-batches", "2", "--no-progress", "--sample-tokens", "0"]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "hamlet.txt"
    path.write_text(TEXT)
    return path


@pytest.fixture
def base(tmp_path):
    torch.manual_seed(0)
    return archzoo.save_pretrained(archzoo.build_model("llama-tiny"), tmp_path / "base")


def settings(**kw) -> TrainSettings:
    return TrainSettings(**{"steps": 5, "batch": 2, "seq_len": 16, "warmup": 2, "eval_every": 2, "eval_batches": 2, "save_every": 2, "lr": 1e-2, **kw})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in records]


@pytest.mark.parametrize("method", [LoRATraining(rank=4, alpha=8), PrefixTraining(length=4, projection=8)], ids=["lora", "prefix"])
def test_adapter_runs_resume_bit_exactly_and_leave_the_base_alone(tmp_path, text, base, method):
    straight = train(base, out=tmp_path / "a", text=text, settings=settings(), method=method, progress=False)
    train(base, out=tmp_path / "b", text=text, settings=settings(), method=method, stop_after=3, progress=False)
    resumed = resume(tmp_path / "b", progress=False)
    assert without_timing(resumed.records) == without_timing(straight.records)
    assert straight.records[-1]["loss"] < straight.records[0]["loss"]
    adapter = tmp_path / "a" / "adapter"
    assert json.loads((adapter / "adapter_config.json").read_text())["peft_type"] in ("LORA", "PREFIX_TUNING")
    assert not (tmp_path / "a" / "model").exists()
    # the base weights did not move; base + saved adapter is the trained model
    trained = straight.model.eval()
    reloaded = archzoo.load_adapter(archzoo.load_pretrained(base), adapter).eval()
    original = archzoo.load_pretrained(base).state_dict()
    for key, value in trained.state_dict().items():
        if key in original:
            assert torch.equal(value, original[key]), key
    ids = torch.randint(0, 512, (1, 8))
    with torch.no_grad():
        assert torch.equal(reloaded(ids), trained(ids))


def test_cli_flags(tmp_path, text, base, capsys):
    out = tmp_path / "run"
    argv = ["train", str(base), "--text", str(text), "--out", str(out), "--steps", "2", *QUICK]
    assert main([*argv, "--lora", "rank=2,alpha=4,targets=q_proj,o_proj"]) == 0
    config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["target_modules"]) == (2, 4.0, ["o_proj", "q_proj"])
    assert "trainable parameters" in capsys.readouterr().out
    assert main([*argv, "--overwrite", "--prefix", "3"]) == 0
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["num_virtual_tokens"] == 3
    assert main([*argv, "--overwrite", "--lora", "rank=two"]) == 2
    assert "--lora: rank='two' is not a int" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--lora", "targets=qkv"]) == 2
    assert "matches no linear layer" in capsys.readouterr().err
    assert main(["train", "--resume", str(out), "--prefix", "4"]) == 2


def test_parse_lora():
    method = parse_lora("rank=16,alpha=32,targets=q_proj,k_proj,v_proj,dropout=0.1")
    assert (method.rank, method.alpha, method.targets, method.dropout) == (16, 32.0, ("q_proj", "k_proj", "v_proj"), 0.1)
    assert parse_lora("").targets == ("q_proj", "v_proj")
    with pytest.raises(archzoo.InputError, match="unknown key 'r'"):
        parse_lora("r=8")


def test_the_run_reports_the_adapter_estimate_beside_the_measured_peak(tmp_path, text, base, capsys):
    out = tmp_path / "run"
    argv = ["train", str(base), "--text", str(text), "--out", str(out), "--steps", "2", *QUICK]
    assert main([*argv, "--prefix", "4"]) == 0
    printed = capsys.readouterr().out
    assert "MiB estimated (estimate_memory" in printed and "adapter/)" in printed
