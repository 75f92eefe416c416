"""Finding and reading config files: a name under ``configs/``, or a path."""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path

from .errors import ConfigError
from .model_config import Config

_PACKAGE = Path(__file__).resolve().parent.parent


def config_dirs() -> list[Path]:
    """Where named configs live: inside an installed wheel (``archzoo/configs``),
    or at the root of a source checkout (``configs/``)."""
    candidates = [_PACKAGE / "configs", _PACKAGE.parent.parent / "configs"]
    return [d for d in candidates if d.is_dir()]


def config_paths() -> dict[str, Path]:
    """Every named config: file stem -> path, sorted by family then name."""
    found: dict[str, Path] = {}
    for directory in config_dirs():
        for path in sorted(directory.glob("*/*.toml")):
            found.setdefault(path.stem, path)
    return dict(sorted(found.items(), key=lambda kv: (kv[1].parent.name, kv[0])))


def load_config(name_or_path: str | Path) -> Config:
    """Load a config by name (``"llama-tiny"``) or by path to a ``.toml`` file."""
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.is_file():
        paths = config_paths()
        if str(name_or_path) not in paths:
            near = difflib.get_close_matches(str(name_or_path), list(paths), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(near)}?" if near else f"{len(paths)} configs; see `archzoo list`"
            raise ConfigError(str(name_or_path), "<name>", f"no config of that name; {hint}")
        path = paths[str(name_or_path)]
    if not path.is_file():
        raise ConfigError(str(path), "<file>", "no such file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), "<file>", f"not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8") from None
    except OSError as err:
        raise ConfigError(str(path), "<file>", f"cannot read: {err.strerror or err}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), "<toml>", f"not valid TOML: {err}") from None
    return Config.from_dict(data, str(path))
