"""TOML-shaped dict <-> typed, frozen section dataclasses, with type checks per field.

Unknown sections and keys are errors (a typo must not pass silently); every
value is checked against its annotation. Semantic rules are in ``validate.py``;
``Config.from_dict`` / ``Config.to_dict`` (``model_config.py``) put the two together.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, get_args, get_origin

from .errors import ConfigError
from .sections import SECTIONS, PositionSection, RopeScalingSection

TOP_LEVEL_KEYS = ("name", "family", "source", "description")
REQUIRED_SECTIONS = ("model", "attention")


def parse_fields(data: dict, source: str) -> dict[str, Any]:
    """The ``Config`` keyword arguments of a TOML-shaped dict: top-level strings and typed sections."""
    if not isinstance(data, dict):
        raise ConfigError(source, "<root>", "a config is a table of sections")
    unknown = set(data) - set(TOP_LEVEL_KEYS) - set(SECTIONS)
    if unknown:
        raise ConfigError(
            source,
            ", ".join(sorted(unknown)),
            f"unknown key or section; allowed: {', '.join(sorted({*TOP_LEVEL_KEYS, *SECTIONS}))}",
        )
    for key in ("name", "family"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(source, key, "required, a non-empty string")
    for key in ("source", "description"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(source, key, "must be a string")
    for section in REQUIRED_SECTIONS:
        if section not in data:
            raise ConfigError(source, f"[{section}]", "required section is missing")

    sections = {
        name: _parse_section(name, cls, data[name], source)
        for name, cls in SECTIONS.items()
        if name in data
    }
    return {
        "name": data["name"],
        "family": data["family"],
        "source": data.get("source", ""),
        "description": data.get("description", ""),
        "path": source,
        **sections,
    }


def _parse_section(name: str, cls: type, table: Any, source: str):
    if not isinstance(table, dict):
        raise ConfigError(source, f"[{name}]", "must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = set(table) - set(fields)
    if unknown:
        raise ConfigError(
            source,
            ", ".join(f"{name}.{k}" for k in sorted(unknown)),
            f"unknown key; [{name}] takes: {', '.join(fields)}",
        )
    values = {}
    for key, value in table.items():
        where = f"{name}.{key}"
        if cls is PositionSection and key == "scaling":
            values[key] = _parse_section("position.scaling", RopeScalingSection, value, source)
            continue
        values[key] = _coerce(value, hints[key], where, source)
    missing = [
        k
        for k, f in fields.items()
        if k not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(source, ", ".join(f"{name}.{k}" for k in missing), "required field is missing")
    return cls(**values)


def _coerce(value: Any, annotation: Any, where: str, source: str) -> Any:
    """Check ``value`` against a field annotation; ints are accepted where floats are."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, options[0], where, source)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise ConfigError(source, where, f"unknown kind {value!r}; choose one of {', '.join(map(repr, allowed))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or not all(_is_int(v) for v in value):
            raise ConfigError(source, where, "must be a list of integers")
        return tuple(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, where, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        if not _is_int(value):
            raise ConfigError(source, where, f"must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, where, f"must be a number, got {value!r}")
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(source, where, f"must be a finite number, got {value}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(source, where, f"must be a string, got {value!r}")
        return value
    raise TypeError(f"no coercion for {annotation!r} at {where}")  # a bug in sections.py


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def section_to_dict(section) -> dict:
    """A section's TOML table; fields equal to their defaults (or None) are left out."""
    table = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            table[f.name] = section_to_dict(value)
            continue
        default = f.default if f.default is not dataclasses.MISSING else dataclasses.MISSING
        if value is None or value == default:
            continue
        table[f.name] = list(value) if isinstance(value, tuple) else value
    return table
