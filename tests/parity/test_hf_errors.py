"""Bad checkpoints fail with errors that name the problem."""

from __future__ import annotations

import json

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

import archzoo
from archzoo.models.hf import UnsupportedConfig, WeightMappingError


@pytest.fixture
def llama_folder(hf_folder):
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )
    return hf_folder(transformers.LlamaForCausalLM(config))


def test_unsupported_architecture_lists_the_supported_ones(llama_folder):
    path = llama_folder / "config.json"
    config = json.loads(path.read_text())
    config["architectures"] = ["MambaForCausalLM"]
    path.write_text(json.dumps(config))
    with pytest.raises(UnsupportedConfig) as err:
        archzoo.load_pretrained(llama_folder)
    message = str(err.value)
    assert "MambaForCausalLM" in message
    for supported in ("LlamaForCausalLM", "BloomForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        assert supported in message


def test_missing_weight_is_listed(llama_folder):
    path = llama_folder / "model.safetensors"
    state = load_file(path)
    del state["model.layers.0.mlp.up_proj.weight"]
    save_file(state, path)
    with pytest.raises(WeightMappingError) as err:
        archzoo.load_pretrained(llama_folder)
    assert "layers.0.mlp.up_proj.weight" in str(err.value)


def test_unknown_weight_is_listed(llama_folder):
    path = llama_folder / "model.safetensors"
    state = load_file(path)
    state["model.layers.0.mystery.weight"] = torch.zeros(3)
    save_file(state, path)
    with pytest.raises(WeightMappingError) as err:
        archzoo.load_pretrained(llama_folder)
    assert "model.layers.0.mystery.weight" in str(err.value)


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(archzoo.errors.CheckpointError, match=f"{tmp_path}/config.json: field 'hidden_size' is missing"):
        archzoo.load_pretrained(tmp_path)


def test_save_refuses_what_no_architecture_expresses(tmp_path):
    cfg = archzoo.load_config("llama-tiny")
    odd = cfg.replace(position=cfg.position.__class__(kind="none"))  # no positions: no HF class has that
    with pytest.raises(UnsupportedConfig) as err:
        archzoo.save_pretrained(archzoo.build_model(odd), tmp_path / "x")
    assert "LlamaForCausalLM" in str(err.value)
    assert not (tmp_path / "x").exists()  # nothing half-written
