"""``tokenizer.json``: the ``tokenizers`` library's own file (normalizer, pre-tokenizer, model,
post-processor, decoder, added tokens), read by that library, so encoding is exactly
what transformers' fast tokenizers produce for the same file."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .optional import require
from .settings import TokenSettings
from .tokenizer import Tokenizer


class HFJsonTokenizer(Tokenizer):
    format = "tokenizer.json"

    def __init__(self, folder: Path, vocab_file: Path, settings: TokenSettings):
        tokenizers = require("tokenizers", f"{vocab_file}")
        try:
            self.backend = tokenizers.Tokenizer.from_file(str(vocab_file))
        except Exception as err:  # the library raises bare Exceptions for malformed files
            raise CheckpointError(f"{vocab_file}: not a tokenizers file ({err})") from None
        vocab = self.backend.get_vocab(with_added_tokens=True)
        self._vocab_size = max(vocab.values(), default=-1) + 1
        self._special = frozenset(i for i, t in self.backend.get_added_tokens_decoder().items() if t.special)
        ids = {}
        for role, text in settings.tokens.items():
            if text not in vocab:
                raise CheckpointError(f"{folder}: {role}_token {text!r} is not in the vocabulary of {vocab_file}")
            ids[role] = vocab[text]
        super().__init__(folder, vocab_file, settings, ids)

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        if skip_special_tokens:  # bos/eos/pad count as special even where tokenizer.json does not flag them
            ids = [i for i in ids if i not in self.special_ids]
        return self.backend.decode(ids, skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special | frozenset(self._ids.values())
