"""Hugging Face checkpoint interop: config maps and weight rules per family."""

from __future__ import annotations


def load_pretrained(folder, *, dtype=None):
    raise NotImplementedError


def save_pretrained(model, folder) -> None:
    raise NotImplementedError
