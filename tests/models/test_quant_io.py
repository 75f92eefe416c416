"""Quantized models save and load: the documented tensors, the recipe in config.json, the same logits."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

import archzoo
from archzoo.blocks.quant import QuantLinear
from archzoo.errors import CheckpointError


@pytest.mark.parametrize(
    "name, mode, kwargs",
    [
        ("llama-tiny", "int8", {}),
        ("qwen2-tiny", "int4", {"group_size": 32, "skip": (), "embeddings": True}),  # tied, all quantized
        ("qwen2-tiny", "int4", {"group_size": 32}),  # tied, head float
        ("qwen3-moe-tiny", "int4", {"group_size": 16}),  # stacked experts
        ("deepseek-v2-tiny", "int8", {}),  # MLA's kv_b_proj
    ],
)
def test_save_and_load_round_trip(tmp_path, name, mode, kwargs):
    model = archzoo.quantize(archzoo.build_model(name).eval(), mode, **kwargs)
    archzoo.save_pretrained(model, tmp_path / "q")
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    recipe = config["quantization_config"]
    assert recipe["quant_method"] == "archzoo" and recipe["mode"] == mode
    with safe_open(str(tmp_path / "q" / "model.safetensors"), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    q_proj = stored["layers.0.attn.q_proj.qweight"] if "deepseek" not in name else stored["layers.0.attn.o_proj.qweight"]
    assert q_proj.dtype == (torch.int8 if mode == "int8" else torch.uint8)
    assert not any(k.endswith(".weight") and v.dim() == 2 and "embed" not in k and "lm_head" not in k and "router" not in k
                   for k, v in stored.items())  # no float matrix besides the embedding / head / router
    loaded = archzoo.load_pretrained(tmp_path / "q")
    assert isinstance(loaded.layers[0].attn.o_proj, QuantLinear)
    ids = torch.tensor([[3, 1, 4, 1, 5, 9, 2, 6]])
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))  # the same tensors, the same forward


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_a_bf16_model_round_trips_in_bf16(tmp_path, mode):
    model = archzoo.quantize(archzoo.build_model("qwen3-moe-tiny", dtype=torch.bfloat16).eval(), mode, 32)
    archzoo.save_pretrained(model, tmp_path / "q")
    loaded = archzoo.load_pretrained(tmp_path / "q")
    assert loaded.layers[0].attn.q_proj.scales.dtype == torch.bfloat16 and loaded.embed.weight.dtype == torch.bfloat16
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))


def test_a_tampered_tensor_is_refused_naming_the_file(tmp_path):
    from safetensors.torch import save_file

    model = archzoo.quantize(archzoo.build_model("llama-tiny"), "int4", group_size=32)
    archzoo.save_pretrained(model, tmp_path / "q")
    path = tmp_path / "q" / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    stored["layers.0.attn.q_proj.scales"] = stored["layers.0.attn.q_proj.scales"][:, :1].contiguous()
    save_file(stored, str(path))
    with pytest.raises(CheckpointError, match="model.safetensors: layers.0.attn.q_proj.scales"):
        archzoo.load_pretrained(tmp_path / "q")


def test_a_float_model_reads_unchanged(tmp_path):
    model = archzoo.build_model("llama-tiny")
    archzoo.save_pretrained(copy.deepcopy(model), tmp_path / "f")
    assert "quantization_config" not in json.loads((tmp_path / "f" / "config.json").read_text())
