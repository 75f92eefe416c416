"""``save_adapter`` / ``load_adapter``: an adapter folder in PEFT's format, written all or nothing.

    adapter_config.json         PEFT's config (``peft_type`` LORA or PREFIX_TUNING, ranks, targets, ...)
    adapter_model.safetensors   the adapter tensors under PEFT's names

``peft.PeftModel.from_pretrained(transformers_model, folder)`` reads the folder,
and ``load_adapter`` reads one that PEFT wrote (see ``peft_lora.py`` and ``peft_prefix.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from ..atomic import atomic_folder
from ..errors import CheckpointError, InputError
from .lora import lora_layers
from .peft_lora import lora_from_peft, lora_to_peft
from .peft_prefix import prefix_from_peft, prefix_to_peft

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"


def save_adapter(model: nn.Module, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write the model's LoRA adapters (or its P-tuning prefix) to ``folder`` in PEFT's format.

    overwrite: replace an existing non-empty folder whole (else ``CheckpointError``).
    """

    has_lora, has_prefix = bool(lora_layers(model)), getattr(model, "prefix", None) is not None
    if has_lora and has_prefix:
        raise InputError("model: has both LoRA adapters and a prefix; PEFT's format holds one kind per folder")
    if not (has_lora or has_prefix):
        raise InputError("model: has no adapter to save (add_lora or add_prefix first)")
    config, tensors, metadata = lora_to_peft(model) if has_lora else prefix_to_peft(model)
    folder = Path(folder)
    with atomic_folder(folder, overwrite=overwrite) as tmp:
        save_file(tensors, str(tmp / WEIGHTS), metadata=metadata)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder


def read_adapter(folder: str | Path) -> tuple[dict, dict, dict]:
    """(adapter_config, tensors, safetensors metadata) of an adapter folder; errors name the file."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG, folder / WEIGHTS
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (an adapter folder holds {CONFIG} and {WEIGHTS})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path}: not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: must hold a JSON object")
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for a damaged file
        raise CheckpointError(f"{weights_path}: cannot be read as safetensors ({err})") from err
    return config, tensors, metadata


def load_adapter(model: nn.Module, folder: str | Path) -> nn.Module:
    """Attach the adapter in ``folder`` (archzoo's or PEFT's) to ``model``, or fill the adapters it has.

    Everything else is frozen, as after ``add_lora`` / ``add_prefix``. Returns ``model``.
    """

    config, tensors, metadata = read_adapter(folder)
    where = str(Path(folder) / CONFIG)
    kind = config.get("peft_type")
    if kind == "LORA":
        lora_from_peft(model, config, tensors, metadata, where)
    elif kind == "PREFIX_TUNING":
        prefix_from_peft(model, config, tensors, metadata, where)
    else:
        raise CheckpointError(f"{where}: peft_type {kind!r} is not supported (LORA and PREFIX_TUNING are)")
    return model
