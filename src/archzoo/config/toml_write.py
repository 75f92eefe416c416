"""Writing a TOML-shaped config dict as TOML text (the standard library reads TOML but cannot write it).

Only what archzoo configs hold is written: strings, booleans, integers, finite
floats, lists of integers, and tables (sections, and ``[position.scaling]``
inside one). Top-level strings come first, then one ``[section]`` per table,
in the order of the dict; ``tomllib.loads(dumps(d)) == d`` for every such dict.
"""

from __future__ import annotations

import json
import math
from typing import Any


def dumps(data: dict[str, Any]) -> str:
    """TOML text of ``data``; raises ValueError on a value TOML configs do not hold."""
    lines = [f"{key} = {_value(value, key)}" for key, value in data.items() if not isinstance(value, dict)]
    for key, value in data.items():
        if isinstance(value, dict):
            lines += _table(key, value)
    return "\n".join(lines) + "\n"


def _table(name: str, table: dict[str, Any]) -> list[str]:
    lines = ["", f"[{name}]"]
    lines += [f"{key} = {_value(value, f'{name}.{key}')}" for key, value in table.items() if not isinstance(value, dict)]
    for key, value in table.items():
        if isinstance(value, dict):
            lines += _table(f"{name}.{key}", value)
    return lines


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value} cannot be written (configs hold finite numbers)")
        return repr(value)  # shortest form that reads back to the same float; valid TOML
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string: same escapes as JSON
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return "[" + ", ".join(str(v) for v in value) + "]"
    raise ValueError(f"{where}: {value!r} is not a value a config holds")
