"""Where ``archzoo generate`` / ``archzoo chat`` get a tokenizer: ``--tokenizer DIR``, else the model's folder.

Without one, text becomes UTF-8 bytes only where ids are bytes by construction:
a config name (random weights: no vocabulary exists, and the tiny configs'
>= 256 ids are read as bytes) or a checkpoint whose vocabulary is exactly 256
tokens. A checkpoint folder with a larger vocabulary and no tokenizer files is
refused: feeding it bytes would print garbage.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..text import VOCAB_FILES, Tokenizer, find_vocab_file, load_tokenizer

BYTE_VOCAB = 256


def find_tokenizer(model_arg: str, tokenizer_arg: str | None) -> Tokenizer | None:
    """The tokenizer named by ``--tokenizer``, else the one in the model's folder, else None."""
    if tokenizer_arg is not None:
        return load_tokenizer(tokenizer_arg)
    folder = Path(model_arg)
    if folder.is_dir() and find_vocab_file(folder) is not None:
        return load_tokenizer(folder)
    return None


def bytes_allowed(model_arg: str, vocab_size: int) -> bool:
    """Whether text may go in as UTF-8 bytes when there is no tokenizer (see the module docstring)."""
    if Path(model_arg).is_dir():
        return vocab_size == BYTE_VOCAB
    return vocab_size >= BYTE_VOCAB


def no_tokenizer_error(model_arg: str, vocab_size: int, option: str) -> InputError:
    if Path(model_arg).is_dir():
        return InputError(
            f"{option}: {model_arg} has no tokenizer (none of {', '.join(VOCAB_FILES)}) and its vocabulary of "
            f"{vocab_size} tokens is not bytes ({BYTE_VOCAB}); pass --tokenizer DIR, or --prompt-ids"
        )
    return InputError(
        f"{option}: the model has a vocabulary of {vocab_size} tokens, too small for UTF-8 bytes "
        f"(needs >= {BYTE_VOCAB}); pass --tokenizer DIR, or --prompt-ids"
    )


def decode_bytes(ids: list[int]) -> str:
    """Byte ids as text (ids >= 256 are not bytes and are left out)."""
    return bytes(i for i in ids if i < BYTE_VOCAB).decode("utf-8", errors="replace")
