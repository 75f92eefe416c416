"""``params`` / ``show`` / ``compare`` on a Hugging Face config.json, ``import-config``, and the
held-out check: released config.json files of models outside ``configs/`` give their exact counts.

The held-out reference is independent of archzoo: ``transformers`` builds each model on the
``meta`` device from the same file (``tests/data/hf_configs/SOURCES.md`` names where each copy
comes from) and we count its parameters.
"""

from __future__ import annotations

import importlib.util
import json
import tomllib
from pathlib import Path

import pytest
import torch
import transformers

import archzoo
from archzoo.cli import main
from archzoo.models.hf import ARCHITECTURES

DATA = Path(__file__).resolve().parent.parent / "data" / "hf_configs"
HELD_OUT = sorted(p.name for p in DATA.iterdir() if (p / "config.json").is_file())
PARITY = Path(__file__).resolve().parent.parent / "parity"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, PARITY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def transformers_count(hf: dict) -> int:
    """The released model built by transformers on meta; Qwen v1 (remote code) as the Qwen2 model
    of the same shapes (test_param_counts.qwen_v1_as_qwen2 says why they are the same)."""
    architecture = hf["architectures"][0]
    if architecture == "QWenLMHeadModel":
        config, cls = _load("test_param_counts").qwen_v1_as_qwen2(hf), transformers.Qwen2ForCausalLM
    else:
        cls = getattr(transformers, architecture)
        config = cls.config_class.from_dict(hf)
    with torch.device("meta"):
        return sum(p.numel() for p in cls(config).parameters())


def test_held_out_models_are_not_in_the_zoo():
    assert len(HELD_OUT) >= 7
    zoo = {name.lower() for name in archzoo.config.config_paths()}
    assert not any(name.lower() in zoo for name in HELD_OUT)


@pytest.mark.parametrize("name", HELD_OUT)
def test_params_json_on_a_released_config_json_gives_the_released_count(capsys, name):
    hf = json.loads((DATA / name / "config.json").read_text())
    code, out, err = run(capsys, "params", str(DATA / name), "--json")
    assert code == 0, err
    assert json.loads(out)["total"] == transformers_count(hf)
    code, out, _ = run(capsys, "params", str(DATA / name / "config.json"), "--json")
    assert json.loads(out)["total"] == transformers_count(hf)


def test_params_report_on_config_json_equals_the_report_on_its_toml(capsys, tmp_path):
    folder = DATA / "Qwen2.5-3B"
    run(capsys, "import-config", str(folder), "-o", str(tmp_path / "Qwen2.5-3B.toml"))
    _, from_json, _ = run(capsys, "params", str(folder))
    _, from_toml, _ = run(capsys, "params", str(tmp_path / "Qwen2.5-3B.toml"))
    table = lambda text: text[text.index("\nparameters ") :]  # noqa: E731 (name, description, source differ)
    assert table(from_json) == table(from_toml)
    assert "source: " + str(folder / "config.json") in from_json


def test_show_and_compare_take_config_json(capsys):
    code, out, _ = run(capsys, "show", str(DATA / "Qwen-72B"))
    assert code == 0 and "Qwen-72B" in out and "0..79 (80 alike)" in out
    assert "q_proj: Linear  [weight [8192, 8192], bias [8192]]" in out  # c_attn, split
    code, out, _ = run(capsys, "compare", str(DATA / "TinyLlama-1.1B-Chat-v1.0" / "config.json"), "llama-tiny", "--json")
    columns = json.loads(out)
    hf = json.loads((DATA / "TinyLlama-1.1B-Chat-v1.0" / "config.json").read_text())
    assert code == 0 and columns[0]["total"] == transformers_count(hf) and columns[1]["name"] == "llama-tiny"


def test_unsupported_or_broken_config_json_is_one_clear_line(capsys, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"]}))
    code, out, err = run(capsys, "params", str(tmp_path / "m"))
    assert code == 2 and "'MistralForCausalLM' is not supported" in err and "config.json" in err
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = run(capsys, "params", str(tmp_path / "bad.json"))
    assert code == 2 and "bad.json" in err and "not valid JSON" in err
    (tmp_path / "short.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "vocab_size": 8}))
    code, _, err = run(capsys, "params", str(tmp_path / "short.json"))
    assert code == 2 and "short.json" in err and "hidden_size" in err and "missing" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "show", str(tmp_path / "empty"))
    assert code == 2 and "without config.json" in err


# ---- import-config: the TOML loads to the same counts, for every architecture ------------------


def _released_config_jsons() -> dict[str, dict]:
    """One released config.json per supported architecture (Glm: transformers' defaults, GLM-4-9B's)."""
    dense = _load("released_hf_configs").RELEASED
    added = _load("released_hf_configs_added")
    moe = _load("test_moe_param_counts").RELEASED
    cases = {
        "LlamaForCausalLM": dense["llama3-8b"]["config"],
        "Qwen2ForCausalLM": added.RELEASED_ADDED["qwen2.5-14b"]["config"],
        "Qwen3ForCausalLM": added.RELEASED_ADDED["qwen3-4b"]["config"],
        "BloomForCausalLM": dense["bloom-560m"]["config"],
        "GlmForCausalLM": {**transformers.GlmConfig().to_dict(), "architectures": ["GlmForCausalLM"]},
        "ChatGLMModel": added.REMOTE_CODE_ADDED["chatglm3-6b"]["config"],
        "DeepseekV3ForCausalLM": moe["deepseek-v3"][2] | {"architectures": ["DeepseekV3ForCausalLM"]},
        "DeepseekV2ForCausalLM": moe["deepseek-v2-lite"][2] | {"architectures": ["DeepseekV2ForCausalLM"]},
        "Qwen3MoeForCausalLM": moe["qwen3-30b-a3b"][2] | {"architectures": ["Qwen3MoeForCausalLM"]},
        "Qwen2MoeForCausalLM": moe["qwen1.5-moe-a2.7b"][2] | {"architectures": ["Qwen2MoeForCausalLM"]},
        "BaiChuanForCausalLM": dense["baichuan-7b"]["config"],
        "BaichuanForCausalLM": added.REMOTE_CODE_ADDED["baichuan2-13b"]["config"],
        "QWenLMHeadModel": json.loads((DATA / "Qwen-72B" / "config.json").read_text()),
        "DeepseekForCausalLM": added.REMOTE_CODE_ADDED["deepseek-moe-16b"]["config"],
    }
    return cases


CASES = _released_config_jsons()


def test_every_supported_architecture_has_a_round_trip_case():
    assert set(CASES) == set(ARCHITECTURES)


@pytest.mark.parametrize("architecture", sorted(CASES))
def test_import_config_round_trips_the_counts(capsys, tmp_path, architecture):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(CASES[architecture]))
    out_toml = tmp_path / "imported.toml"
    code, out, err = run(capsys, "import-config", str(tmp_path / "ckpt"), "-o", str(out_toml))
    assert code == 0, err
    data = tomllib.loads(out_toml.read_text())
    assert data["name"] == "imported" and str(tmp_path / "ckpt" / "config.json") in data["source"]
    from_json = archzoo.models.hf.config_json.load_any_config(tmp_path / "ckpt")
    from_toml = archzoo.load_config(out_toml)
    assert archzoo.count_params(from_toml) == archzoo.count_params(from_json).__class__(
        **{**archzoo.count_params(from_json).__dict__, "name": "imported"}
    )
    assert from_toml.to_dict() | {"name": "x", "source": "", "description": ""} == from_json.to_dict() | {
        "name": "x", "source": "", "description": ""}  # fmt: skip


def test_import_config_refuses_to_overwrite_unless_forced(capsys, tmp_path):
    target = tmp_path / "q.toml"
    target.write_text("keep me\n")
    code, _, err = run(capsys, "import-config", str(DATA / "Qwen2.5-3B"), "-o", str(target))
    assert code == 2 and "exists" in err and "--force" in err
    assert target.read_text() == "keep me\n"
    code, _, _ = run(capsys, "import-config", str(DATA / "Qwen2.5-3B"), "-o", str(target), "--force")
    assert code == 0 and tomllib.loads(target.read_text())["name"] == "q"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.toml"]  # no temporary file left behind


def test_import_config_default_output_is_the_folder_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "import-config", str(DATA / "Qwen-1_8B"))
    assert code == 0 and (tmp_path / "Qwen-1_8B.toml").is_file()
    cfg = archzoo.load_config(tmp_path / "Qwen-1_8B.toml")
    assert cfg.name == "Qwen-1_8B" and cfg.family == "qwen"
