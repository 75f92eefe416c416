"""save_pretrained: which folders it may replace, what it keeps, and the files' modes."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

import archzoo
from archzoo.errors import CheckpointError


def _model(name="llama-tiny", seed=0, **model_fields):
    torch.manual_seed(seed)
    cfg = archzoo.load_config(name)
    if model_fields:
        cfg = cfg.replace(model=dataclasses.replace(cfg.model, **model_fields))
    return archzoo.build_model(cfg)


def test_files_get_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        folder = archzoo.save_pretrained(_model(), tmp_path / "ckpt")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"config.json": 0o644, "model.safetensors": 0o644}  # safetensors alone writes 0600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_the_same_model_is_replaced_and_keeps_its_tokenizer(tmp_path):
    folder = archzoo.save_pretrained(_model(seed=0), tmp_path / "ckpt")
    (folder / "tokenizer.json").write_text("{}")
    (folder / "generation_config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"old weights")
    tuned = _model(seed=1)  # same architecture and sizes, other weights: a fine-tuned copy
    archzoo.save_pretrained(tuned, folder)  # no flag needed
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",  # old weight files never survive
    ]
    assert torch.equal(archzoo.load_pretrained(folder).embed.weight, tuned.embed.weight)


def test_another_model_needs_overwrite_and_leaves_nothing_of_the_old_one(tmp_path):
    folder = tmp_path / "ckpt"
    old = _model(vocab_size=300)
    archzoo.save_pretrained(old, folder)
    (folder / "generation_config.json").write_text('{"eos_token_id": 2}')
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"ckpt: holds something other than this model .*vocab_size.*overwrite=True"):
        archzoo.save_pretrained(_model(), folder)
    assert json.loads((folder / "config.json").read_text())["vocab_size"] == 300  # untouched
    archzoo.save_pretrained(_model(), folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert archzoo.load_pretrained(folder).config.model.vocab_size == 512


def test_a_sharded_checkpoint_is_replaced_whole(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}))
    save_file({"a": torch.zeros(2)}, folder / "model-00001-of-00002.safetensors")
    (folder / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(CheckpointError, match="overwrite"):
        archzoo.save_pretrained(_model(), folder)
    archzoo.save_pretrained(_model(), folder, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="no config.json"):
        archzoo.save_pretrained(_model(), tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"
