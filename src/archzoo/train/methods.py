"""What a run trains and what it leaves behind: a training *method*.

The loop asks its method four things, so that parameter-efficient methods
(LoRA, prefix tuning) plug in without touching the loop:

    prepare(model)          change the model once, before the optimizer exists (add adapters, freeze)
    trainable(model)        the (name, parameter) pairs the optimizer updates
    state_dict(model)       the tensors a checkpoint must keep to resume (trained weights and buffers)
    save(model, folder)     the run's final artefact; check_save(model, folder) finds every reason
                            it would fail before the first step

``spec()`` is a JSON-able dict that ``run.json`` stores and ``METHODS[spec["method"]]`` turns
back into the method on ``--resume``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError
from ..models.hf import _choose_family, save_pretrained
from .adapter_methods import LoRATraining, PrefixTraining


class FullTraining:
    """Every parameter trains; the artefact is a Hugging Face checkpoint folder (``save_pretrained``)."""

    name = "full"
    artefact = "model"  # the folder of the run that save() writes

    def spec(self) -> dict:
        return {"method": self.name}

    @classmethod
    def from_spec(cls, spec: dict) -> FullTraining:
        return cls()

    def prepare(self, model: nn.Module) -> None:
        pass

    def trainable(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return model.state_dict()

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
        load_exactly(model, state, source)

    def check_save(self, model: nn.Module, folder: Path) -> None:
        """``UnsupportedConfig`` if no Hugging Face architecture can express the config."""
        _choose_family(model.config, getattr(model, "hf_architecture", None))

    def save(self, model: nn.Module, folder: Path, companions: Sequence[Path] = ()) -> None:
        """Replaces ``folder`` whole and atomically: ``train`` checked --overwrite before the first step.
        ``companions``: the source checkpoint's tokenizer and other files, saved with the weights."""
        save_pretrained(model, folder, overwrite=True, extra_files=companions)


def load_exactly(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into the model's tensors (their memory layout kept); every key must match.

    Tied weights are stored once (safetensors refuses aliases), so a key the
    model holds as an alias of a stored one may be absent."""
    own = model.state_dict()
    aliases = duplicate_keys(own)
    missing = sorted(set(own) - set(state) - aliases)
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    with torch.no_grad():
        for key, value in state.items():
            if own[key].shape != value.shape:
                raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}")
            own[key].copy_(value)


def duplicate_keys(state: dict[str, torch.Tensor]) -> set[str]:
    """Keys whose tensor shares its memory with an earlier key (a tied head)."""
    seen, duplicates = set(), set()
    for key, tensor in state.items():
        pointer = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if pointer in seen:
            duplicates.add(key)
        seen.add(pointer)
    return duplicates


METHODS: dict[str, Callable[[dict], object]] = {
    "full": FullTraining.from_spec,
    "lora": LoRATraining.from_spec,
    "prefix": PrefixTraining.from_spec,
}
"""``spec["method"]`` -> constructor from the spec; parameter-efficient methods add themselves here."""
