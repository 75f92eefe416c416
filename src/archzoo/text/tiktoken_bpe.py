"""A tiktoken BPE file such as Qwen v1's ``qwen.tiktoken``, read by the ``tiktoken`` library.

The file is one ``base64(token bytes) rank`` pair a line: byte-level BPE whose
rank is the token id. What the file does not say - the pre-tokenizer regex and
the special tokens - is per vocabulary, and written below as data
(``TIKTOKEN_FILES``, keyed by file name). Qwen v1's (``tokenization_qwen.py``):

* regex ``(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+``
  (single digits, unlike GPT-4's runs of three);
* ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ``<|extra_0|>`` ... ``<|extra_204|>``
  with ids from 151643 (right after the 151,643 BPE ranks), matched in any text;
* the text is NFC-normalised first; no bos is added; ``<|endoftext|>`` ends a document (eos);
* chat prompts are ChatML (``chat.CHAT_FORMATS["chatml"]``), a turn ending in ``<|im_end|>``.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import CheckpointError, InputError
from .optional import require
from .settings import TokenSettings
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class TiktokenVocabulary:
    """What a tiktoken vocabulary needs besides its ranks file."""

    pattern: str
    specials: tuple[str, ...]
    first_special_id: int
    eos: str
    chat_format: str | None = None
    stop: tuple[str, ...] = ()
    """Further tokens that end a chat answer."""
    nfc: bool = True


QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN = TiktokenVocabulary(
    pattern=QWEN_PATTERN,
    specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205))),
    first_special_id=151643,
    eos="<|endoftext|>",
    chat_format="chatml",
    stop=("<|im_start|>", "<|im_end|>"),
)

TIKTOKEN_FILES = {"qwen.tiktoken": QWEN}
"""File name -> its vocabulary's regex and special tokens."""


def read_ranks(path: Path) -> dict[bytes, int]:
    """``base64 rank`` lines -> {token bytes: rank}; a bad line is a CheckpointError naming the line."""
    ranks = {}
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise CheckpointError(f"{path}: line {number}: expected 'base64-token rank', got {line[:60]!r}") from None
    return ranks


class TiktokenTokenizer(Tokenizer):
    format = "tiktoken BPE"

    def __init__(self, folder: Path, vocab_file: Path, settings: TokenSettings):
        tiktoken = require("tiktoken", f"{vocab_file}")
        vocab = TIKTOKEN_FILES[vocab_file.name]
        ranks = read_ranks(vocab_file)
        if ranks and max(ranks.values()) >= vocab.first_special_id:
            raise CheckpointError(
                f"{vocab_file}: ranks reach {max(ranks.values())}, into the special token ids from {vocab.first_special_id}"
            )
        self.specials = {text: vocab.first_special_id + i for i, text in enumerate(vocab.specials)}
        self.vocabulary = vocab
        self.chat_format = vocab.chat_format
        self.encoding = tiktoken.Encoding(
            vocab_file.stem, pat_str=vocab.pattern, mergeable_ranks=ranks, special_tokens=self.specials
        )
        self.ranks = ranks
        self._known = set(ranks.values()) | set(self.specials.values())
        tokens = {"eos": vocab.eos, **settings.tokens}
        for role, text in tokens.items():
            if text not in self.specials:
                raise CheckpointError(f"{folder}: {role}_token {text!r} is not a special token of {vocab_file.name}")
        ids = {role: self.specials[text] for role, text in tokens.items()}
        super().__init__(folder, vocab_file, replace(settings, tokens=tokens), ids)
        self._stop = frozenset(self.specials[t] for t in vocab.stop)

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if self.vocabulary.nfc:
            text = unicodedata.normalize("NFC", text)
        return self.encoding.encode(text, allowed_special="all", disallowed_special=())

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        unknown = [i for i in ids if i not in self._known]
        if unknown:
            raise InputError(f"decode: ids {unknown[:5]} are neither BPE ranks nor special tokens of {self.vocab_file}")
        if skip_special_tokens:
            ids = [i for i in ids if i not in self.special_ids]
        return self.encoding.decode(ids, errors="replace")

    def token_to_id(self, token: str) -> int | None:
        if token in self.specials:
            return self.specials[token]
        return self.ranks.get(token.encode("utf-8"))

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.specials.values())

    @property
    def stop_ids(self) -> frozenset[int]:
        return super().stop_ids | self._stop
