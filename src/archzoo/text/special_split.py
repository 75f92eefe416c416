"""Special tokens in a text are matched whole before the vocabulary sees the rest.

``"<s>Hi</s>"`` encodes as bos, the pieces of ``"Hi"``, eos - not as the
characters of ``"<s>"``. This is what transformers' tokenizers do with their
special and added tokens (a chat template's output relies on it). Where two
tokens could match at one place, the longer wins.
"""

from __future__ import annotations

import re


class SpecialSplitter:
    """Cut a text into ordinary runs and special tokens: ``split(text) -> [(piece, id or None), ...]``."""

    def __init__(self, specials: dict[str, int]):
        self.specials = {text: i for text, i in specials.items() if text}
        by_length = sorted(self.specials, key=len, reverse=True)
        self._pattern = re.compile("(" + "|".join(map(re.escape, by_length)) + ")") if by_length else None

    def split(self, text: str) -> list[tuple[str, int | None]]:
        if self._pattern is None:
            return [(text, None)] if text else []
        pieces = []
        for i, piece in enumerate(self._pattern.split(text)):
            if i % 2:
                pieces.append((piece, self.specials[piece]))
            elif piece:
                pieces.append((piece, None))
        return pieces
