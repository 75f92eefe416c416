"""A SentencePiece ``tokenizer.model`` (LLaMA 1/2, Baichuan, Yi), read by the ``sentencepiece`` library.

    encode(text) = [bos if add_bos_token] + pieces of each run + [eos if add_eos_token]

Special tokens (bos, eos, unk, pad and tokenizer_config.json's added tokens)
are matched whole first (``special_split``); each run between them is encoded
by SentencePiece with its own normalizer, dummy-prefix space included - what
LLaMA's original tokenizer (transformers' sentencepiece-based ``legacy`` one)
does. bos is added unless tokenizer_config.json says ``add_bos_token: false``
(Yi), eos only with ``add_eos_token: true``.

transformers 5 converts such a file into a ``tokenizers`` pipeline whose
Metaspace step adds no dummy-prefix space to a text that already starts with
one, so for ``" Hello"`` it gives ``▁Hello`` where SentencePiece gives ``▁ ▁Hello``:
archzoo follows SentencePiece, the library the vocabulary was trained with.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError
from .optional import require
from .settings import TokenSettings
from .special_split import SpecialSplitter
from .tokenizer import Tokenizer


def load_sentencepiece(vocab_file: Path):
    """A SentencePieceProcessor for ``vocab_file``; an unreadable file is a CheckpointError naming it."""
    spm = require("sentencepiece", f"{vocab_file}")
    processor = spm.SentencePieceProcessor()
    try:
        processor.Load(str(vocab_file))
    except (OSError, RuntimeError) as err:
        raise CheckpointError(f"{vocab_file}: not a SentencePiece model ({err})") from None
    return processor


class SentencePieceTokenizer(Tokenizer):
    format = "SentencePiece tokenizer.model"
    offset = 0
    """Id of the model's piece 0 (ChatGLM-6B puts 20,000 image tokens before its text pieces)."""

    def __init__(self, folder: Path, vocab_file: Path, settings: TokenSettings):
        self.sp = load_sentencepiece(vocab_file)
        pieces = self.sp.GetPieceSize()
        ids = {}
        for role, own in (("bos", self.sp.bos_id()), ("eos", self.sp.eos_id()), ("pad", self.sp.pad_id()),
                          ("unk", self.sp.unk_id())):  # fmt: skip
            text = settings.tokens.get(role)
            if text is not None:
                token_id = self._piece_or_added(text, settings)
                if token_id is None:
                    raise CheckpointError(
                        f"{folder}: {role}_token {text!r} is neither a piece of {vocab_file} nor an added token"
                    )
                ids[role] = token_id
            elif own >= 0:
                ids[role] = own + self.offset
        self._specials = {**settings.added, **{settings.tokens.get(r) or self.sp.IdToPiece(i - self.offset): i
                                               for r, i in ids.items()}}  # fmt: skip
        for text in settings.extra_special:
            token_id = self._piece_or_added(text, settings)
            if token_id is not None:
                self._specials[text] = token_id
        self._splitter = SpecialSplitter(self._specials)
        self._vocab_size = max([pieces + self.offset - 1, *settings.added.values()]) + 1
        self._by_id = {i: text for text, i in self._specials.items()}
        self.add_bos = settings.add_bos if settings.add_bos is not None else "bos" in ids
        self.add_eos = bool(settings.add_eos)
        super().__init__(folder, vocab_file, settings, ids)

    def _piece_or_added(self, text: str, settings: TokenSettings) -> int | None:
        if text in settings.added:
            return settings.added[text]
        piece = self.sp.PieceToId(text)
        if piece == self.sp.unk_id() and text != self.sp.IdToPiece(piece):
            return None
        return piece + self.offset

    def _encode_run(self, text: str) -> list[int]:
        return [i + self.offset for i in self.sp.EncodeAsIds(text)]

    def _decode_run(self, ids: list[int]) -> str:
        return self.sp.DecodeIds([i - self.offset for i in ids])

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = []
        for piece, special in self._splitter.split(text):
            ids.extend([special] if special is not None else self._encode_run(piece))
        if add_special_tokens:
            ids = [self.bos_id] * self.add_bos + ids + [self.eos_id] * self.add_eos
        return ids

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        out, run = [], []
        for i in ids:
            if i in self._by_id:
                out.append(self._decode_run(run))
                run = []
                if not skip_special_tokens:
                    out.append(self._by_id[i])
            else:
                run.append(i)
        out.append(self._decode_run(run))
        return "".join(out)

    def token_to_id(self, token: str) -> int | None:
        return self._piece_or_added(token, self.settings)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self._by_id)
