"""Hugging Face checkpoint interop: ``load_pretrained`` and ``save_pretrained``.

A checkpoint folder is ``config.json`` plus ``model.safetensors`` (or shards
named by ``model.safetensors.index.json``). Each supported architecture has a
table (``models/hf/<family>.py``): a config map in both directions and a list
of weight rules (``rules.py``). Keys that don't correspond are errors that
list them; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ...atomic import recover
from ...config import Config
from ...fast import check_implementation, use_implementation
from ...fast.quant import align_codes
from ..decoder import CausalLM
from ..quant_io import adopt_quantized, load_quantized, quantized_state, recipe
from ..quantize import is_quantized
from .checks import check_fields
from .family import HFFamily, UnsupportedConfig
from .io import read_config, read_safetensors
from .loading import check_state, common_dtype, config_of, weights_of
from .registry import ARCHITECTURES, FAMILIES
from .rules import WeightMappingError, ours_to_hf
from .saving import write_checkpoint

__all__ = ["ARCHITECTURES", "UnsupportedConfig", "WeightMappingError", "load_pretrained", "save_pretrained"]


def family_of(hf_config: dict, folder: Path) -> HFFamily:
    architectures = hf_config.get("architectures") or []
    architecture = architectures[0] if architectures else None
    if architecture not in ARCHITECTURES:
        raise UnsupportedConfig(
            f"{folder}/config.json: architecture {architecture!r} is not supported; "
            f"supported: {', '.join(ARCHITECTURES)}"
        )
    return ARCHITECTURES[architecture]


def load_pretrained(
    folder: str | Path,
    *,
    dtype: torch.dtype | None = None,
    name: str | None = None,
    implementation: str = "fast",
) -> CausalLM:
    """Load a Hugging Face checkpoint folder into the archzoo model of the same architecture.

    dtype: cast the weights (default: keep the checkpoint's dtype).
    implementation: ``"fast"`` (default) or ``"reference"``, as for ``build_model``.
    The model remembers its architecture (``model.hf_architecture``) for ``save_pretrained``.
    """
    check_implementation(implementation)
    folder = Path(folder)
    recover(folder)  # a replace killed half-way on a filesystem without an atomic exchange
    hf_config = read_config(folder)
    check_fields(hf_config, folder / "config.json")
    family = family_of(hf_config, folder)
    cfg = config_of(family, hf_config, folder / "config.json", name or folder.resolve().name)
    if "quantization_config" in hf_config:  # archzoo's int8 / int4 layout (models/quant_io.py)
        model = align_codes(load_quantized(cfg, hf_config, read_safetensors(folder), folder))
        model.hf_architecture = family.architecture
        return use_implementation(model.to(dtype) if dtype is not None else model, implementation)
    layout = family.quantized
    q = layout.recipe(hf_config) if layout is not None else None
    if q is not None:  # a released integer-weight format (ChatGLM-6B's INT8 / INT4): into the same block
        state = layout.to_archzoo(read_safetensors(folder, layout.integer_key), q, folder)
        model = adopt_quantized(cfg, q, weights_of(state, family, cfg, folder), folder, f"{folder}/config.json's quantization")
        model = align_codes(model)  # the int8 kernel's vector loads need them aligned (fast/quant.py)
        model.hf_architecture = family.architecture
        return use_implementation(model.to(dtype) if dtype is not None else model, implementation)
    state = weights_of(read_safetensors(folder), family, cfg, folder)
    model = model_from_state(cfg, state, dtype=dtype, source=folder)
    model.hf_architecture = family.architecture
    return use_implementation(model, implementation)


def model_from_state(
    cfg: Config, state: dict[str, torch.Tensor], *, dtype: torch.dtype | None = None, source: Path | None = None
) -> CausalLM:
    """Build on ``meta`` and adopt the given tensors (no random init, no second copy).

    Position tables (RoPE frequencies, ALiBi slopes) are built on the CPU even on
    ``meta``, so everything else must come from the checkpoint. ``source`` (the
    folder) is named in the errors of ``check_state``."""
    with torch.device("meta"):
        model = CausalLM(cfg)
    check_state(model, state, cfg, source)
    state = common_dtype(model, state)
    if cfg.model.tie_embeddings:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.model.tie_embeddings:
        model.lm_head.weight = model.embed.weight
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise WeightMappingError("tensors left unset after loading", still_meta)
    if dtype is not None:
        model.to(dtype)
    return model


def save_pretrained(
    model: CausalLM,
    folder: str | Path,
    *,
    architecture: str | None = None,
    overwrite: bool = False,
    extra_files: Iterable[str | Path] = (),
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that ``transformers`` loads back.

    architecture: which Hugging Face class to write; default: the one the model
    was loaded from, else the first that can express its config.
    overwrite: replace a folder that holds something other than this model.
    extra_files: files copied into the folder, in the same all-or-nothing write
    (a fine-tuned model takes its source checkpoint's tokenizer along).

    The folder is written all-or-nothing (``archzoo.atomic``): killed at any
    instant, it holds the complete old checkpoint or the complete new one.
    A non-empty folder is replaced only if it holds *the same model* - a
    config.json of the same architecture that states the same hyperparameters
    (everything but the dtype; the weights may differ, as after fine-tuning) -
    or if ``overwrite=True``. Saving the same model keeps its other files
    (tokenizer, generation_config.json, README); any other replace keeps none of
    the old folder's files. Old weight files (shards, ``.bin``) never survive.
    """
    cfg = model.config
    family, hf_config = _choose_family(cfg, architecture or getattr(model, "hf_architecture", None))
    if is_quantized(model):  # archzoo's own names and tensors, the recipe in config.json (models/quant_io.py)
        state = quantized_state(model)
        hf_config["quantization_config"] = recipe(model)
        floats = {t.dtype for t in state.values() if t.is_floating_point()}
        hf_config["torch_dtype"] = str(floats.pop()).removeprefix("torch.") if len(floats) == 1 else "float32"
        write_checkpoint(Path(folder), family, hf_config, state, overwrite=overwrite, extra=extra_files)
        return Path(folder)
    from ...adapters.lora import base_state_dict  # here, not at the top: adapters/ imports models.hf

    state = base_state_dict(model)  # refuses unmerged LoRA adapters and prefixes (save_adapter writes those)
    if cfg.model.tie_embeddings:
        state.pop("lm_head.weight", None)
    hf_state = ours_to_hf(state, family.rules(cfg), cfg)
    dtypes = {t.dtype for t in hf_state.values()}
    hf_config["torch_dtype"] = str(dtypes.pop()).removeprefix("torch.") if len(dtypes) == 1 else "float32"
    write_checkpoint(Path(folder), family, hf_config, hf_state, overwrite=overwrite, extra=extra_files)
    return Path(folder)


def _choose_family(cfg: Config, architecture: str | None) -> tuple[HFFamily, dict]:
    if architecture is not None:
        if architecture not in ARCHITECTURES:
            raise UnsupportedConfig(f"architecture {architecture!r} is not supported; supported: {', '.join(ARCHITECTURES)}")
        family = ARCHITECTURES[architecture]
        return family, _config_to_hf(family, cfg)
    reasons = []
    for family in FAMILIES:
        try:
            return family, _config_to_hf(family, cfg)
        except UnsupportedConfig as err:
            reasons.append(str(err))
    raise UnsupportedConfig(f"{cfg.name}: no Hugging Face architecture can express this config:\n  " + "\n  ".join(reasons))


def _config_to_hf(family: HFFamily, cfg: Config) -> dict:
    """``family.config_to_hf``, refusing a NormHead unless the config.json says ``norm_head``
    (only Baichuan 2's layout does: any other would load back as a plain head)."""
    hf_config = family.config_to_hf(cfg)
    if cfg.model.norm_head and not hf_config.get("norm_head"):
        raise UnsupportedConfig(f"{family.architecture} cannot express a NormHead (model.norm_head)")
    return hf_config
