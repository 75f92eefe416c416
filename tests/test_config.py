"""Config loading: every bad config fails at load time with a ``ConfigError``
naming the file, the field and the rule; every shipped config loads and
round-trips; named configs are found from the source tree and from a wheel."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from archzoo.config import Config, ConfigError, config_paths, load_config

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "name": "probe",
    "family": "test",
    "model": {"vocab_size": 64, "d_model": 32, "n_layers": 1},
    "attention": {"n_heads": 4},
    "mlp": {"hidden": 64},
}


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _render(data: dict, prefix: str = "") -> str:
    """A TOML document for a dict of scalars and (nested) tables."""
    scalars = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    lines = ([f"[{prefix}]"] if prefix else []) + scalars
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", _render(table, f"{prefix}.{key}" if prefix else key)]
    return "\n".join(lines)


def write_config(tmp_path: Path, *, drop: tuple[str, ...] = (), **sections) -> Path:
    """BASE with ``sections`` merged in (``model={"d_model": 0}``) and ``drop``ped
    keys (``"attention"`` or ``"model.vocab_size"``), written to a .toml file."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    for key in drop:
        section, _, field = key.partition(".")
        if field:
            del data[section][field]
        else:
            del data[section]
    path = tmp_path / "probe.toml"
    path.write_text(_render(data) + "\n", encoding="utf-8")
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def assert_names(err: ConfigError, path: Path, field: str, *rule_words: str) -> None:
    message = str(err)
    assert str(path) in message, message
    assert field in err.field and field in message, message
    for words in rule_words:
        assert words in err.rule and words in message, message


def test_the_probe_config_itself_is_valid(tmp_path):
    cfg = load_config(write_config(tmp_path))
    assert (cfg.head_dim, cfg.n_kv_heads, cfg.mlp_hidden) == (8, 4, 64)


def test_unknown_section(tmp_path):
    path = write_config(tmp_path, modle={"d_model": 32})
    assert_names(load_error(path), path, "modle", "unknown key or section", "model")


def test_unknown_key_is_a_typo_not_ignored(tmp_path):
    path = write_config(tmp_path, attention={"n_head": 4})
    assert_names(load_error(path), path, "attention.n_head", "unknown key", "n_heads")


def test_unknown_top_level_key(tmp_path):
    path = write_config(tmp_path, nmae="x")
    assert_names(load_error(path), path, "nmae", "unknown key or section")


def test_unknown_key_in_nested_scaling_table(tmp_path):
    path = write_config(tmp_path, position={"scaling": {"kind": "linear", "factor": 2.0, "factr": 2.0}})
    assert_names(load_error(path), path, "position.scaling.factr", "unknown key")


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [("norm", "kind", "batchnorm"), ("mlp", "kind", "relu"), ("position", "layout", "zigzag"), ("attention", "kind", "linear")],
)
def test_unknown_kind_lists_the_choices(tmp_path, section, field, value):
    path = write_config(tmp_path, **{section: {field: value}})
    err = load_error(path)
    assert_names(err, path, f"{section}.{field}", f"unknown kind {value!r}", "choose one of")


def test_kv_heads_must_divide_heads(tmp_path):
    path = write_config(tmp_path, attention={"n_heads": 4, "n_kv_heads": 3})
    assert_names(load_error(path), path, "attention.n_kv_heads", "must divide n_heads (4)", "got 3")


def test_rotated_width_must_be_even(tmp_path):
    # head_dim 10, half of it rotates: 5 dims cannot be split into pairs
    path = write_config(tmp_path, model={"d_model": 40}, position={"rotary_fraction": 0.5})
    assert_names(load_error(path), path, "position.rotary_fraction", "= 5 must be even")


def test_rotated_width_must_be_whole(tmp_path):
    # head_dim 10 x 0.25 = 2.5 dims: silently truncating to 2 would hide a typo
    path = write_config(tmp_path, model={"d_model": 40}, position={"rotary_fraction": 0.25})
    assert_names(load_error(path), path, "position.rotary_fraction", "2.5 is not a whole number")


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.25])
def test_rotary_fraction_outside_zero_one(tmp_path, fraction):
    path = write_config(tmp_path, position={"rotary_fraction": fraction})
    assert_names(load_error(path), path, "position.rotary_fraction", "must be in (0, 1]")


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("model", "vocab_size", 0),
        ("model", "d_model", -32),
        ("model", "n_layers", 0),
        ("model", "max_seq_len", 0),
        ("attention", "n_heads", 0),
        ("attention", "head_dim", -8),
        ("mlp", "hidden", 0),
        ("norm", "eps", 0.0),
    ],
)
def test_sizes_must_be_positive(tmp_path, section, field, value):
    path = write_config(tmp_path, **{section: {field: value}})
    assert_names(load_error(path), path, f"{section}.{field}", "must be > 0", str(value))


@pytest.mark.parametrize("theta", [-1.0, 0.0, 1.0])
def test_rope_base_must_exceed_one(tmp_path, theta):
    # omega_i = theta^(-2i/r) must fall with i; theta = 1 gives every pair the same angle
    path = write_config(tmp_path, position={"theta": theta})
    assert_names(load_error(path), path, "position.theta", "must be in (1, ", str(theta))


def test_d_model_must_split_into_heads_unless_head_dim_is_set(tmp_path):
    path = write_config(tmp_path, model={"d_model": 30})
    assert_names(load_error(path), path, "attention.n_heads", "d_model (30) must be a multiple of n_heads (4)", "head_dim")
    # with an explicit head_dim the same widths are fine (Qwen3's rule)
    cfg = load_config(write_config(tmp_path, model={"d_model": 30}, attention={"n_heads": 4, "head_dim": 8}))
    assert cfg.head_dim == 8


@pytest.mark.parametrize(
    ("section", "field", "value", "rule"),
    [
        ("model", "d_model", True, "must be an integer"),
        ("model", "n_layers", 2.0, "must be an integer"),
        ("model", "vocab_size", "64", "must be an integer"),
        ("norm", "eps", "1e-5", "must be a number"),
        ("norm", "eps", True, "must be a number"),
        ("model", "tie_embeddings", 1, "must be true or false"),
        ("attention", "qkv_bias", "yes", "must be true or false"),
    ],
)
def test_wrong_types(tmp_path, section, field, value, rule):
    path = write_config(tmp_path, **{section: {field: value}})
    assert_names(load_error(path), path, f"{section}.{field}", rule)


def test_non_string_name(tmp_path):
    path = write_config(tmp_path, name=3)
    assert_names(load_error(path), path, "name", "non-empty string")


@pytest.mark.parametrize(
    ("dropped", "field", "rule"),
    [
        ("model.vocab_size", "model.vocab_size", "required field is missing"),
        ("attention.n_heads", "attention.n_heads", "required field is missing"),
        ("attention", "[attention]", "required section is missing"),
        ("model", "[model]", "required section is missing"),
        ("name", "name", "required"),
        ("family", "family", "required"),
    ],
)
def test_missing_required(tmp_path, dropped, field, rule):
    path = write_config(tmp_path, drop=(dropped,))
    assert_names(load_error(path), path, field, rule)


def test_mlp_needs_hidden_or_multiple_of(tmp_path):
    path = write_config(tmp_path, drop=("mlp.hidden",))
    assert_names(load_error(path), path, "mlp.hidden", "set hidden, or multiple_of")
    cfg = load_config(write_config(tmp_path, drop=("mlp.hidden",), mlp={"multiple_of": 16}))
    assert cfg.mlp_hidden == 96  # LLaMA's rule: int(2 * 4 * 32 / 3) = 85, rounded up to 16


@pytest.mark.parametrize(("field", "value"), [("eos_id", 64), ("pad_id", -1), ("gmask_id", 1000)])
def test_token_ids_must_be_in_the_vocabulary(tmp_path, field, value):
    path = write_config(tmp_path, tokens={field: value})
    assert_names(load_error(path), path, f"tokens.{field}", "must be in [0, vocab_size=64)", str(value))


def test_scaling_needs_its_original_context(tmp_path):
    path = write_config(tmp_path, position={"scaling": {"kind": "llama3", "factor": 8.0}})
    assert_names(load_error(path), path, "position.scaling.original_max_seq_len", "required for kind = 'llama3'")


def test_bad_toml_syntax(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[model\nvocab_size = 64\n', encoding="utf-8")
    assert_names(load_error(path), path, "<toml>", "not valid TOML")


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.toml"
    assert_names(load_error(path), path, "<file>", "no such file")


def test_unknown_config_name_suggests_the_nearest_ones():
    with pytest.raises(ConfigError) as info:
        load_config("llama-tinny")
    message = str(info.value)
    assert "llama-tinny" in message and "no config of that name" in message
    assert "did you mean llama-tiny" in message
    assert "llama3.1-405b" not in message  # the nearest few (difflib), not all 45
    with pytest.raises(ConfigError, match="see `archzoo list`"):
        load_config("nothing-like-any-name")


def test_from_dict_names_its_source():
    data = {**BASE, "attention": {"n_heads": 4, "n_kv_heads": 3}}
    with pytest.raises(ConfigError, match=r"^<mine>: attention\.n_kv_heads: must divide"):
        Config.from_dict(data, source="<mine>")


# ---- the shipped configs ---------------------------------------------------

SHIPPED = sorted(config_paths())


def test_configs_are_found():
    assert {"llama-tiny", "bloom-tiny", "qwen2-tiny", "qwen3-tiny", "baichuan-tiny"} <= set(SHIPPED)
    for name, path in config_paths().items():
        assert path.stem == name and path.suffix == ".toml"


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_config_loads_and_round_trips(name):
    cfg = load_config(name)
    assert cfg.name == name, "the name inside the file must equal its file name"
    assert cfg.family and cfg.source and cfg.description
    again = Config.from_dict(cfg.to_dict(), source="<round-trip>")
    assert dataclasses.replace(again, path=cfg.path) == cfg
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize("name", [n for n in SHIPPED if n.endswith("-tiny")])
def test_tiny_configs_are_tiny(name):
    from archzoo import count_params

    assert count_params(name).total < 1_000_000


# ---- configs inside an installed wheel -----------------------------------


def test_wheel_build_maps_configs_into_the_package():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert wheel["force-include"]["configs"] == "archzoo/configs"
    assert wheel["packages"] == ["src/archzoo"]


def test_named_configs_load_from_an_installed_wheel(tmp_path, monkeypatch):
    """Build the real wheel (hatchling, well under a second), unpack it as an
    installer would, and load a config by name in a fresh interpreter that
    imports archzoo from the unpacked wheel only."""
    from hatchling.build import build_wheel  # the build backend; listed in the test extra

    monkeypatch.chdir(REPO)
    wheel_name = build_wheel(str(tmp_path / "dist"))
    site = tmp_path / "site"
    with zipfile.ZipFile(tmp_path / "dist" / wheel_name) as wheel:
        assert "archzoo/configs/llama/llama-tiny.toml" in wheel.namelist()
        wheel.extractall(site)
    probe = (
        "import archzoo, json, pathlib;"
        "from archzoo.config import config_dirs;"
        "cfg = archzoo.load_config('llama-tiny');"
        "print(pathlib.Path(archzoo.__file__).parent);"
        "print(json.dumps([str(d) for d in config_dirs()]));"
        "print(cfg.path)"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    package, dirs, cfg_path = result.stdout.strip().splitlines()
    assert Path(package) == site / "archzoo"
    assert json.loads(dirs) == [str(site / "archzoo" / "configs")]
    assert Path(cfg_path) == site / "archzoo" / "configs" / "llama" / "llama-tiny.toml"
