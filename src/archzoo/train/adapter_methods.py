"""Parameter-efficient training methods: LoRA (``--lora``) and P-tuning v2 (``--prefix``).

The base model is frozen; only the adapters train, so a checkpoint holds the
adapters and the buffers (DeepSeek-V3's router bias still moves), and the run's
artefact is an adapter folder in PEFT's format (``run/adapter``), written all
or nothing by ``save_adapter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..adapters import add_lora, add_prefix, save_adapter
from ..adapters.hf_names import family_of_model
from ..adapters.lora import DEFAULT_TARGETS, is_adapter_parameter
from ..errors import CheckpointError, InputError


class AdapterTraining:
    """What LoRA and prefix training share: trainable = adapters; checkpoint = adapters + buffers."""

    artefact = "adapter"

    def trainable(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        return [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        buffers = {name for name, _ in model.named_buffers()}
        return {k: v for k, v in model.state_dict().items() if is_adapter_parameter(k) or k in buffers}

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
        own = self.state_dict(model)
        if set(own) != set(state):
            missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise CheckpointError(f"{source}: adapter tensors do not match (missing {missing[:5]}, unexpected {unexpected[:5]})")
        with torch.no_grad():
            for key, value in state.items():
                if own[key].shape != value.shape:
                    raise CheckpointError(f"{source}: {key} has shape {tuple(value.shape)}, the model {tuple(own[key].shape)}")
                own[key].copy_(value)

    def check_save(self, model: nn.Module, folder: Path) -> None:
        """``UnsupportedConfig`` if no Hugging Face architecture can name the adapter's modules."""
        family_of_model(model)

    def save(self, model: nn.Module, folder: Path, companions: Sequence[Path] = ()) -> None:
        """An adapter is read on top of its base checkpoint, whose folder keeps the tokenizer:
        ``companions`` are not copied."""
        save_adapter(model, folder, overwrite=True)


class LoRATraining(AdapterTraining):
    """``add_lora(model, rank, alpha, targets, dropout)`` before the optimizer exists."""

    name = "lora"

    def __init__(self, rank: int = 8, alpha: float = 16.0, targets=DEFAULT_TARGETS, dropout: float = 0.0):
        self.rank, self.alpha, self.targets, self.dropout = rank, alpha, tuple(targets), dropout

    def spec(self) -> dict:
        return {"method": self.name, "rank": self.rank, "alpha": self.alpha, "targets": list(self.targets), "dropout": self.dropout}

    @classmethod
    def from_spec(cls, spec: dict) -> LoRATraining:
        return cls(spec["rank"], spec["alpha"], spec["targets"], spec.get("dropout", 0.0))

    def prepare(self, model: nn.Module) -> None:
        add_lora(model, rank=self.rank, alpha=self.alpha, targets=self.targets, dropout=self.dropout)


class PrefixTraining(AdapterTraining):
    """``add_prefix(model, length, projection)`` before the optimizer exists."""

    name = "prefix"

    def __init__(self, length: int = 16, projection: bool | int = False):
        self.length, self.projection = length, projection

    def spec(self) -> dict:
        return {"method": self.name, "length": self.length, "projection": self.projection}

    @classmethod
    def from_spec(cls, spec: dict) -> PrefixTraining:
        return cls(spec["length"], spec.get("projection", False))

    def prepare(self, model: nn.Module) -> None:
        add_prefix(model, length=self.length, projection=self.projection)


def estimate_kwargs(spec: dict) -> dict | None:
    """``estimate_memory``'s keywords for a run's method spec (None: a method it cannot estimate)."""
    method = spec.get("method", "full")
    if method == "full":
        return {}
    if method == "lora":
        return {"lora_rank": spec["rank"], "lora_targets": tuple(spec["targets"])}
    if method == "prefix":
        return {"prefix_length": spec["length"], "prefix_projection": spec.get("projection", False)}
    return None


LORA_KEYS = {"rank": int, "alpha": float, "targets": str, "dropout": float}


def parse_lora(text: str) -> LoRATraining:
    """``rank=8,alpha=16,targets=q_proj,v_proj,dropout=0.05`` (every key optional; a bare name after
    ``targets=`` is one more target) -> the method; ``InputError`` names the flag and the key."""
    values: dict[str, list[str]] = {}
    key = None
    for token in [t.strip() for t in text.split(",") if t.strip()]:
        if "=" in token:
            key, _, value = token.partition("=")
            key = key.strip()
            if key not in LORA_KEYS:
                raise InputError(f"--lora: unknown key {key!r} (keys: {', '.join(LORA_KEYS)})")
            if key in values:
                raise InputError(f"--lora: {key} given twice")
            values[key] = [value.strip()]
        elif key == "targets":
            values[key].append(token)
        else:
            raise InputError(f"--lora: {token!r} is not key=value (e.g. rank=8,alpha=16,targets=q_proj,v_proj)")
    kwargs: dict = {}
    for key, items in values.items():
        if key == "targets":
            kwargs[key] = tuple(items)
            continue
        try:
            kwargs[key] = LORA_KEYS[key](items[0])
        except ValueError:
            raise InputError(f"--lora: {key}={items[0]!r} is not a {LORA_KEYS[key].__name__}") from None
    return LoRATraining(**kwargs)
