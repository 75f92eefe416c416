"""Finding and reading config files: a name under ``configs/``, or a path."""

from __future__ import annotations

from pathlib import Path

import tomllib

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
            raise ConfigError(
                str(name_or_path),
                "<name>",
                f"no config of that name; known: {', '.join(paths) or '(none found)'}",
            )
        path = paths[str(name_or_path)]
    if not path.is_file():
        raise ConfigError(str(path), "<file>", "no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(str(path), "<toml>", f"not valid TOML: {err}") from None
    return Config.from_dict(data, str(path))
