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
    assert out.count("layer ") >= cfg.model.n_layers  # the layer plan


def test_bench_reports_consistent_rates(capsys):
    assert main(["bench", "llama-tiny", "--seq-len", "8", "--new-tokens", "2", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert abs(result["prefill_tokens_per_s"] * result["prefill_ms"] / 1e3 - 8) < 1e-6
    assert abs(result["decode_tokens_per_s"] * result["decode_ms_per_token"] / 1e3 - 1) < 1e-6


def test_unknown_config_is_a_clear_error(capsys):
    assert main(["params", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "no-such-model" in err and "llama-tiny" in err
