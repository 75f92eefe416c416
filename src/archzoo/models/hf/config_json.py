"""A Hugging Face ``config.json`` as an archzoo ``Config``, with no weights at all.

``load_any_config`` is the one loader behind ``archzoo params``, ``show``,
``compare`` and ``import-config``. It takes

    a config name           llama3-8b            (a TOML under configs/)
    a TOML path             my/model.toml
    a config.json path      ~/ckpt/Qwen2.5-7B/config.json
    a folder holding one    ~/ckpt/Qwen2.5-7B/

and reads a ``config.json`` with the same per-architecture map that
``load_pretrained`` uses (``models/hf/<family>.py``), so the architectures it
reads are exactly the ones a checkpoint folder loads from. The config's
``source`` names the file it came from.
"""

from __future__ import annotations

import json
from pathlib import Path

from ...config import Config, ConfigError, load_config
from ...errors import InputError
from .family import UnsupportedConfig
from .registry import ARCHITECTURES

CONFIG_JSON = "config.json"
CONFIG_ARGUMENT_HELP = "config name (see `archzoo list`), a .toml file, a Hugging Face config.json, or a checkpoint folder holding one"


def config_json_path(spec: str | Path) -> Path | None:
    """The ``config.json`` that ``spec`` names (the file, or a folder holding one); None for a TOML or a name."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / CONFIG_JSON).is_file():
            raise InputError(f"{path}: a folder without {CONFIG_JSON} (give a config name, a .toml file, "
                             f"a {CONFIG_JSON} or a checkpoint folder holding one)")  # fmt: skip
        return path / CONFIG_JSON
    if path.suffix == ".json":
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        return path
    return None


def default_name(path: Path) -> str:
    """``.../Qwen2.5-7B/config.json`` -> ``Qwen2.5-7B``; ``.../qwen25.json`` -> ``qwen25``."""
    path = path.resolve()
    return path.parent.name if path.name == CONFIG_JSON else path.stem


def read_hf_config(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(str(path), "<json>", f"not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), "<json>", "a config.json is a JSON object")
    return data


def config_dict_from_hf(hf: dict, name: str, where: str) -> dict:
    """The archzoo TOML-shaped dict of a config.json's contents (``where`` names it in messages)."""
    architectures = hf.get("architectures") or []
    architecture = architectures[0] if isinstance(architectures, list) and architectures else None
    if architecture not in ARCHITECTURES:
        raise UnsupportedConfig(
            f"{where}: architecture {architecture!r} is not supported; supported: {', '.join(ARCHITECTURES)}"
        )
    try:
        data = ARCHITECTURES[architecture].config_from_hf(hf, name)
    except KeyError as err:
        raise ConfigError(where, err.args[0], f"required by {architecture}, missing") from None
    data["source"] = f"{where} ({architecture})"
    return data


def load_hf_config(spec: str | Path, name: str | None = None) -> Config:
    """The ``Config`` of a config.json file, or of the one in a folder."""
    path = config_json_path(spec)
    if path is None:
        raise InputError(f"{spec}: not a {CONFIG_JSON} file or a folder holding one")
    data = config_dict_from_hf(read_hf_config(path), name or default_name(path), str(path))
    return Config.from_dict(data, str(path))


def quantization_recipe(spec: str | Path) -> dict | None:
    """The int8 / int4 recipe (``archzoo.quantize``'s arguments) of a quantized checkpoint's config.json:
    archzoo's own ``quantization_config``, or a family's released format (ChatGLM-6B's
    ``quantization_bit``); None for a float checkpoint, a TOML or a config name."""
    path = config_json_path(spec)
    if path is None:
        return None
    hf = read_hf_config(path)
    if isinstance(hf.get("quantization_config"), dict) and hf["quantization_config"].get("quant_method") == "archzoo":
        return hf["quantization_config"]
    architectures = hf.get("architectures") or []
    family = ARCHITECTURES.get(architectures[0]) if isinstance(architectures, list) and architectures else None
    layout = getattr(family, "quantized", None)
    return layout.recipe(hf) if layout is not None else None


def load_any_config(spec: str | Path) -> Config:
    """A config name, a ``.toml`` path, a ``config.json`` path or a folder holding one."""
    if config_json_path(spec) is not None:
        return load_hf_config(spec)
    return load_config(spec)
