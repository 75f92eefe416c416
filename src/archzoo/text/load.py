"""``load_tokenizer(folder)``: find the folder's vocabulary file and read it, offline.

Files are looked for in this order (the first present wins, as in transformers,
whose fast tokenizer prefers ``tokenizer.json`` over a SentencePiece model):

    tokenizer.json      the tokenizers library's file (any model: BPE, Unigram, WordPiece, ...)
    ice_text.model      ChatGLM-6B's SentencePiece model behind 20,000 image ids
    qwen.tiktoken       Qwen v1's tiktoken BPE ranks (any name in tiktoken_bpe.TIKTOKEN_FILES)
    tokenizer.model     a SentencePiece model (LLaMA 1/2, Baichuan, Yi)

``tokenizer_config.json`` / ``special_tokens_map.json`` / ``generation_config.json``
give the special tokens, the chat template and the stop tokens (``settings``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .hf_json import HFJsonTokenizer
from .ice_text import IceTextTokenizer
from .sentencepiece_model import SentencePieceTokenizer
from .settings import read_settings
from .tiktoken_bpe import TIKTOKEN_FILES, TiktokenTokenizer
from .tokenizer import Tokenizer

VOCAB_FILES = {
    "tokenizer.json": HFJsonTokenizer,
    "ice_text.model": IceTextTokenizer,
    **dict.fromkeys(TIKTOKEN_FILES, TiktokenTokenizer),
    "tokenizer.model": SentencePieceTokenizer,
}
"""Vocabulary file name -> the tokenizer that reads it, in the order they are looked for."""


def find_vocab_file(folder: str | Path) -> Path | None:
    """The first of ``VOCAB_FILES`` present in ``folder``, or None."""
    folder = Path(folder)
    return next((folder / name for name in VOCAB_FILES if (folder / name).is_file()), None)


def load_tokenizer(folder: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint folder (see the module docstring for the files it reads).

    Raises CheckpointError naming the folder when it holds no vocabulary file, or naming the file
    that cannot be read; MissingTextExtra when the library a file needs is not installed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not a folder (load_tokenizer reads a checkpoint folder)")
    vocab_file = find_vocab_file(folder)
    if vocab_file is None:
        raise CheckpointError(f"{folder}: no tokenizer: none of {', '.join(VOCAB_FILES)} is there")
    return VOCAB_FILES[vocab_file.name](folder, vocab_file, read_settings(folder))
