"""The tokenizer libraries are an optional extra: ``pip install 'archzoo[text]'``.

Each vocabulary format needs one library (``tokenizers``, ``sentencepiece``,
``tiktoken``; chat templates need ``jinja2``). They are imported only when a
folder asks for them, and a missing one is an error that names the file that
needed it and the extra that installs it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ArchzooError

EXTRA = "pip install 'archzoo[text]'"


class MissingTextExtra(ArchzooError, ImportError):
    """A tokenizer library of the ``[text]`` extra is not installed."""


def require(module: str, needed_for: str) -> ModuleType:
    """Import ``module`` or raise ``MissingTextExtra`` saying what needed it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingTextExtra(f"{needed_for} needs the {module} library, which is not installed: {EXTRA}") from None
