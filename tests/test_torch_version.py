"""Torch version strings as the wheels spell them -> (major, minor)."""

import torch

from archzoo.torch_version import TORCH_VERSION, parse_version


def test_parse_version_forms():
    assert parse_version("2.4.0") == (2, 4)
    assert parse_version("2.5.1+cpu") == (2, 5)
    assert parse_version("2.11.0.dev20250101+cu126") == (2, 11)
    assert parse_version("2.10.0a0+git1234") == (2, 10)
    assert TORCH_VERSION == parse_version(torch.__version__) and TORCH_VERSION >= (2, 4)
