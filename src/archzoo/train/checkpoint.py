"""Training checkpoints: everything a run needs to continue bit-exactly.

A checkpoint is a folder ``checkpoints/step-NNNNNN/`` of the run folder:

    model.safetensors   the method's tensors (full training: every weight and buffer; a tied head once)
    trainer.pt          AdamW's state (moments and step counts), the data position (epoch, index),
                        torch's RNG state, the step and the tokens seen (``torch.save``, read back
                        with ``weights_only=True``)
    checkpoint.json     step and tokens seen, for people and for ``latest_checkpoint``

The learning rate is a function of the step (``schedule.py``), so the step is the
schedule's whole state. Each folder is written whole or not at all
(``archzoo.atomic.atomic_folder``), so a kill while saving leaves the previous
checkpoints intact and no half-written one that ``--resume`` could pick up; the
older ones are deleted only after the new one is in place.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_folder
from ..errors import CheckpointError
from .methods import duplicate_keys

PREFIX = "step-"


@dataclass
class TrainerState:
    step: int  # optimizer steps done
    tokens: int  # training tokens seen
    optimizer: dict
    data: dict
    rng: torch.Tensor


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:06d}"


def save_checkpoint(folder: Path, model_state: dict[str, torch.Tensor], state: TrainerState) -> Path:
    """Write one checkpoint folder atomically; returns its path."""
    aliases = duplicate_keys(model_state)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items() if k not in aliases}
    with atomic_folder(folder) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        torch.save(
            {"step": state.step, "tokens": state.tokens, "optimizer": state.optimizer, "data": state.data, "rng": state.rng},
            tmp / "trainer.pt",
        )
        (tmp / "checkpoint.json").write_text(json.dumps({"step": state.step, "tokens": state.tokens}) + "\n")
    return folder


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], TrainerState]:
    """The model tensors and trainer state of a checkpoint folder; ``CheckpointError`` names a bad file."""
    for name in ("model.safetensors", "trainer.pt"):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder}: no {name} (not a training checkpoint)")
    try:
        tensors = load_file(str(folder / "model.safetensors"))
    except Exception as err:
        raise CheckpointError(f"{folder}/model.safetensors: unreadable ({err})") from None
    try:
        raw = torch.load(folder / "trainer.pt", weights_only=True)
        state = TrainerState(raw["step"], raw["tokens"], raw["optimizer"], raw["data"], raw["rng"])
    except Exception as err:
        raise CheckpointError(f"{folder}/trainer.pt: unreadable ({err})") from None
    return tensors, state


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint below ``folder``, oldest first (hidden temporaries never match)."""
    found = []
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_dir() and path.name.startswith(PREFIX) and path.name[len(PREFIX) :].isdigit():
                found.append((int(path.name[len(PREFIX) :]), path))
    return sorted(found)


def prune_checkpoints(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints."""
    for _, path in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
