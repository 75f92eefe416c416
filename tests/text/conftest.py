"""The tokenizer folders of ``tokenizer_corpus``, trained once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizer_corpus import build_folders


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Format name -> a tokenizer folder (see tokenizer_corpus.build_folders)."""
    return build_folders(tmp_path_factory.mktemp("tokenizers"))
