"""Where ``save_pretrained`` may write, and what it keeps of a folder it replaces.

"The same model": the folder's config.json names the same architecture and,
read back through that architecture's table, states the same hyperparameters as
the config being saved (everything config.json says except the dtype). Its
weights may differ: re-saving a fine-tuned or further-trained model over its own
checkpoint is the common case and needs no flag; its tokenizer and generation
config still belong to it and are kept. Anything else in a non-empty folder - a
different model, a config.json that cannot be read, files that are no
checkpoint at all - is replaced only with ``overwrite=True``, and then whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from ...atomic import recover
from ...errors import ArchzooError, CheckpointError
from .family import HFFamily
from .io import companion_files, read_config, write_folder

DTYPE_KEYS = ("torch_dtype", "dtype", "transformers_version")


def write_checkpoint(
    folder: Path,
    family: HFFamily,
    hf_config: dict,
    hf_state: dict[str, torch.Tensor],
    *,
    overwrite: bool,
    extra: Iterable[str | Path] = (),
) -> None:
    """config.json + weights, with the companions a same-model folder already had and ``extra``
    (by file name; ``extra`` wins), written as one atomic folder."""
    recover(folder)
    keep: list[Path] = []
    if folder.is_dir() and any(folder.iterdir()):
        if same_model(folder, family, hf_config):
            keep = companion_files(folder)
            overwrite = True
        elif not overwrite:
            raise CheckpointError(
                f"{folder}: holds something other than this model ({why_not_same(folder, family, hf_config)}); "
                "pass overwrite=True (archzoo: --overwrite) to replace the whole folder, or choose another one"
            )
    elif folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder}: exists and is not a folder; choose another path")
    files = {path.name: path for path in keep}
    for path in map(Path, extra):
        if not path.is_file():
            raise CheckpointError(f"{path}: not a file (extra_files of save_pretrained)")
        files[path.name] = path
    write_folder(folder, hf_config, hf_state, overwrite=overwrite, keep=list(files.values()))


def same_model(folder: Path, family: HFFamily, hf_config: dict) -> bool:
    return why_not_same(folder, family, hf_config) is None


def why_not_same(folder: Path, family: HFFamily, hf_config: dict) -> str | None:
    """None if ``folder`` holds the same model (see the module docstring), else the reason it does not."""
    from ...config import Config

    if not (folder / "config.json").is_file():
        return "no config.json"
    try:
        theirs = read_config(folder)
        if theirs.get("architectures") != [family.architecture]:
            return f"architecture {theirs.get('architectures')}, not {family.architecture}"
        cfg = Config.from_dict(family.config_from_hf(theirs, folder.name), str(folder / "config.json"))
        restated = family.config_to_hf(cfg)
    except (ArchzooError, KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError):
        return "a config.json archzoo cannot read"
    ours = {k: v for k, v in hf_config.items() if k not in DTYPE_KEYS}
    restated = {k: v for k, v in restated.items() if k not in DTYPE_KEYS}
    if ours != restated:
        fields = sorted(k for k in set(ours) | set(restated) if ours.get(k) != restated.get(k))
        return f"a model with other {', '.join(fields[:4])}"
    return None
