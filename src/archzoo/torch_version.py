"""The installed torch's version as (major, minor), parsed once: some features arrive by version.

``"2.5.1+cpu"`` -> ``(2, 5)``; compare with tuples: ``TORCH_VERSION >= (2, 5)``.
"""

from __future__ import annotations

import torch


def parse_version(version: str) -> tuple[int, int]:
    """``"2.11.0.dev20250101+cu126"`` -> ``(2, 11)``: the local tag and everything past the minor dropped."""
    major, minor = version.split("+")[0].split(".")[:2]
    return int(major), int(minor)


TORCH_VERSION = parse_version(torch.__version__)
