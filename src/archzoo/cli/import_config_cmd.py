"""Write the archzoo TOML of a Hugging Face config.json (no weights needed).

    archzoo import-config ~/ckpt/Qwen2.5-3B/config.json -o configs/qwen/qwen2.5-3b.toml
    archzoo import-config ~/ckpt/Qwen2.5-3B/            # writes ./Qwen2.5-3B.toml

The TOML's ``name`` is the output file's stem and its ``source`` names the
config.json it came from; loading it gives the same parameter counts as the
config.json itself (``archzoo params`` takes either). An existing file is
replaced only with ``--force``. Add a ``description`` line by hand: it is the
one thing a config.json cannot say.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ..config import Config
from ..config.toml_write import dumps
from ..errors import InputError
from ..inspect import count_params
from ..models.hf.config_json import config_dict_from_hf, config_json_path, default_name, read_hf_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a Hugging Face config.json, or a checkpoint folder holding one")
    parser.add_argument("-o", "--output", help="the .toml file to write (default: ./<folder name>.toml)")
    parser.add_argument("--force", action="store_true", help="replace the output file if it exists")


def run(args: argparse.Namespace) -> int:
    source = config_json_path(args.config)
    if source is None:
        raise InputError(f"import-config: {args.config}: give a config.json file or a folder holding one")
    output = Path(args.output) if args.output else Path(f"{default_name(source)}.toml")
    if output.suffix != ".toml":
        raise InputError(f"import-config: --output {output}: must end in .toml")
    if output.exists() and not args.force:
        raise InputError(f"import-config: {output} exists; pass --force to replace it")
    data = config_dict_from_hf(read_hf_config(source), output.stem, str(source))
    cfg = Config.from_dict(data, str(source))  # the TOML must load: validate before writing
    write_text_atomically(output, dumps(toml_dict(data, cfg)))
    print(f"wrote {output} ({cfg.name}: {cfg.blocks_summary()})")
    return 0


def toml_dict(data: dict, cfg: Config) -> dict:
    """The mapped dict as a config file lays it out: name, family, source, a generated
    description, then the sections (every field the config.json set, kinds included; empty ones left out)."""
    total = count_params(cfg).total
    head = {key: data[key] for key in ("name", "family", "source")}
    head["description"] = f"imported from a Hugging Face config.json: {cfg.blocks_summary()}; {total:,} parameters"
    sections = {key: value for key, value in data.items() if key not in head and value != {}}
    return head | sections


def write_text_atomically(path: Path, text: str) -> None:
    """The whole file or nothing: written beside ``path`` and renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
