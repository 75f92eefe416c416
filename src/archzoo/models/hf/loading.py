"""The checks between reading a checkpoint folder and adopting its tensors.

Each step turns what can go wrong with a corrupt or contradictory folder into a
``CheckpointError`` (or ``ConfigError`` / ``UnsupportedConfig``) that names the
folder or file, so nothing loads into a wrong model:

* config.json -> archzoo config: a required field that is absent, or a value
  the family table cannot use;
* checkpoint tensors -> our names: keys no rule claims, shapes a rule cannot split;
* our names -> the model built from config.json: every tensor present, none
  extra, each of the shape config.json implies;
* ``tie_word_embeddings: true`` with a stored ``lm_head.weight``: accepted only
  if it equals the embedding (transformers would silently drop a different head).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...config import Config, ConfigError
from ...errors import ArchzooError, CheckpointError
from .family import HFFamily, UnsupportedConfig
from .rules import WeightMappingError, hf_to_ours


def config_of(family: HFFamily, hf_config: dict, path: Path, name: str) -> Config:
    """The archzoo config of a checkpoint's config.json; errors name ``path`` and the field."""
    try:
        table = family.config_from_hf(hf_config, name)
    except UnsupportedConfig as err:
        raise UnsupportedConfig(f"{path}: {err}") from None
    except ArchzooError:
        raise
    except KeyError as err:
        raise CheckpointError(f"{path}: field {err.args[0]!r} is missing ({family.architecture} needs it)") from None
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, IndexError) as err:
        raise CheckpointError(f"{path}: a field has a type or value {family.architecture} cannot use ({err})") from None
    try:
        return Config.from_dict(table, str(path))
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, ZeroDivisionError, OverflowError) as err:
        raise CheckpointError(f"{path}: a field has a type or value archzoo cannot use ({err})") from None


def weights_of(state: dict[str, torch.Tensor], family: HFFamily, cfg: Config, folder: Path) -> dict[str, torch.Tensor]:
    """Checkpoint tensors under our names; errors name the folder."""
    try:
        return hf_to_ours(state, family.rules(cfg), cfg)
    except WeightMappingError as err:
        raise WeightMappingError(f"{folder}: {err.what} (does config.json describe these weights?)", err.keys) from None
    except (RuntimeError, ValueError, IndexError) as err:
        raise CheckpointError(
            f"{folder}: the weights do not fit the shapes config.json describes ({err})"
        ) from None


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], cfg: Config, source: Path | None) -> None:
    """Every tensor of the model present once, with the shape the config implies; a tied head equal to the embedding."""
    where = f"{source}: " if source is not None else ""
    expected = dict(model.state_dict())
    if cfg.model.tie_embeddings:
        expected.pop("lm_head.weight", None)
        head = state.get("lm_head.weight")
        if head is not None:
            embed = state.get("embed.weight")
            if embed is None or head.shape != embed.shape or not torch.equal(head, embed):
                diff = (head.float() - embed.float()).abs().max().item() if embed is not None and head.shape == embed.shape else None
                raise CheckpointError(
                    f"{where}config.json says tie_word_embeddings: true, but the checkpoint holds an lm_head.weight "
                    f"that differs from the embedding (max |diff| {diff}); set tie_word_embeddings to false in "
                    "config.json to load the separate head"
                )
    missing = sorted(set(expected) - set(state) - ({"lm_head.weight"} if cfg.model.tie_embeddings else set()))
    unexpected = sorted(set(state) - set(expected) - ({"lm_head.weight"} if cfg.model.tie_embeddings else set()))
    if missing:
        raise WeightMappingError(f"{where}model weights absent from the checkpoint", missing)
    if unexpected:
        raise WeightMappingError(f"{where}checkpoint weights the model does not have", unexpected)
    wrong = [
        f"{key} is {list(state[key].shape)}, config.json implies {list(ref.shape)}"
        for key, ref in expected.items()
        if key in state and state[key].shape != ref.shape
    ]
    if wrong:
        shown = "; ".join(wrong[:5]) + (f"; ... and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise CheckpointError(f"{where}tensor shapes disagree with config.json: {shown}")


def common_dtype(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Parameters stored in mixed float dtypes cast to the dtype most of their elements have (as transformers
    casts to one dtype); a stray float16 tensor in a float32 file would otherwise fail inside a matmul.
    Buffers keep their stored dtype (DeepSeek-V3's router bias is kept float32 beside bfloat16 weights)."""
    params = {name for name, _ in model.named_parameters()}
    sizes: dict[torch.dtype, int] = {}
    for key, tensor in state.items():
        if key in params:
            sizes[tensor.dtype] = sizes.get(tensor.dtype, 0) + tensor.numel()
    if len(sizes) <= 1:
        return state
    target = max(sizes, key=sizes.get)
    return {k: v.to(target) if k in params else v for k, v in state.items()}
