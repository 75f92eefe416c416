"""The `archzoo list`, `show` and `bench` commands."""

from __future__ import annotations

import json

import archzoo
from archzoo.cli import main
from archzoo.config import config_paths


def test_list_covers_every_config_with_its_exact_total(capsys):
    assert main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(config_paths())
    for name in ("llama-tiny", "llama2-70b"):
        if name in rows:
            assert rows[name]["total"] == archzoo.count_params(name).total
            assert rows[name]["family"] == archzoo.load_config(name).family


def test_list_table_is_readable(capsys):
    assert main(["list", "--family", "llama"]) == 0
    out = capsys.readouterr().out
    assert "llama-tiny" in out and "rmsnorm/pre" in out
    assert "bloom" not in out


def test_show_prints_the_tree_with_shapes(capsys):
    assert main(["show", "llama-tiny"]) == 0
    out = capsys.readouterr().out
    cfg = archzoo.load_config("llama-tiny")
    assert f"q_proj: Linear  [weight [{cfg.n_heads * cfg.head_dim}, {cfg.model.d_model}]]" in out
    assert f"k_proj: Linear  [weight [{cfg.n_kv_heads * cfg.head_dim}, {cfg.model.d_model}]]" in out
    # the layer plan: llama-tiny's layers are all alike, so one collapsed line covers them
    last = cfg.model.n_layers - 1
    assert f"layers   0..{last} ({cfg.model.n_layers} alike): attention=mha mlp=dense" in out


def test_show_collapses_repeated_layer_plan_lines(capsys):
    # DeepSeek-V3: first_dense_layers = 3 of 61, so two runs; --all-layers prints all 61
    assert main(["show", "deepseek-v3"]) == 0
    out = capsys.readouterr().out
    plan = [line.strip() for line in out.split("layer plan:")[1].split("modules")[0].strip().splitlines()]
    assert plan == [
        "layers   0..2 (3 alike): attention=mla mlp=dense",
        "layers   3..60 (58 alike): attention=mla mlp=moe",
    ]
    assert main(["show", "deepseek-v3", "--all-layers"]) == 0
    plan = capsys.readouterr().out.split("layer plan:")[1].split("modules")[0].strip().splitlines()
    assert len(plan) == 61 and plan[3].strip() == "layer    3: attention=mla mlp=moe"


def test_bench_reports_consistent_rates(capsys):
    assert main(["bench", "llama-tiny", "--seq-len", "8", "--new-tokens", "2", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["prefill_tokens_per_s"] * result["prefill_ms"] / 1e3 - 8) < 1e-6
    assert abs(result["decode_tokens_per_s"] * result["decode_ms_per_token"] / 1e3 - 1) < 1e-6


def test_unknown_config_is_a_clear_error(capsys):
    assert main(["params", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "archzoo list" in err
    assert len(err.strip().splitlines()) == 1  # not all 45 names


def test_unknown_config_suggests_the_nearest_names(capsys):
    assert main(["params", "llama-tinyy"]) == 2
    err = capsys.readouterr().err
    assert "did you mean llama-tiny" in err and "llama2-70b" not in err


def test_list_unknown_family_is_an_error(capsys):
    assert main(["list", "--family", "mistral"]) == 2
    err = capsys.readouterr().err
    assert "mistral: no such family" in err and "llama" in err


def test_bench_shows_progress_on_stderr_and_plural_threads(capsys):
    argv = ["bench", "llama-tiny", "--seq-len", "4", "--new-tokens", "1", "--repeats", "1", "--threads", "1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "(fp32, 1 thread)" in out  # not "1 threads"
    # 2 rounds (warm-up + 1 timed) x (prefill + 1 decode step) = 4 model calls, reported as they finish
    assert "4/4 model calls" in err and "left" in err


def test_show_names_the_implementation_of_each_block(capsys):
    assert main(["show", "deepseek-tiny"]) == 0
    out = capsys.readouterr().out.split("implementation (fast):")[1]
    assert "RMSNorm                      fast       (archzoo.fast.norm.FastRMSNorm)" in out
    assert "SwiGLU                       reference  (archzoo.blocks.mlp)" in out
    assert main(["show", "deepseek-tiny", "--implementation", "reference"]) == 0
    out = capsys.readouterr().out.split("implementation (reference):")[1]
    assert "fast" not in out and "RMSNorm                      reference  (archzoo.blocks.norm)" in out
