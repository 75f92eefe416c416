"""Reading and writing Hugging Face checkpoint folders (config.json + safetensors)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json (is this a Hugging Face checkpoint folder?)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_safetensors(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of ``model.safetensors``, or of every shard named by its index."""
    if (folder / INDEX).is_file():
        weight_map = json.loads((folder / INDEX).read_text(encoding="utf-8"))["weight_map"]
        files = sorted(set(weight_map.values()))
    elif (folder / SINGLE).is_file():
        files = [SINGLE]
    else:
        raise FileNotFoundError(f"{folder}: neither {SINGLE} nor {INDEX} (only safetensors checkpoints are read)")
    state = {}
    for name in files:
        with safe_open(str(folder / name), framework="pt") as f:
            for key in f.keys():
                state[key] = f.get_tensor(key)
    return state


def write_folder(folder: Path, config: dict, state: dict[str, torch.Tensor]) -> None:
    """Write config.json and model.safetensors into a temp folder, then move it into place,
    so that a failure never leaves a half-written checkpoint behind."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(tensors, str(tmp / SINGLE), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        folder.mkdir(exist_ok=True)
        for name in (SINGLE, "config.json"):
            os.replace(tmp / name, folder / name)
        stale_index = folder / INDEX
        if stale_index.exists():
            stale_index.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
