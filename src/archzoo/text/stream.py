"""Streaming decode: print generated text token by token without breaking characters or spaces.

A token is not a character: a byte-level vocabulary may split one Chinese
character or emoji over two or three tokens (each alone decodes to U+FFFD),
and SentencePiece drops the space of a word-initial piece when it is decoded
on its own. So each new token is decoded together with the tokens before it,
and only the text that grew past what was already printed is emitted:

    shown  = decode(ids[start:read])            what was printed of the open window
    whole  = decode(ids[start:])                the same window with the new tokens
    emit whole[len(shown):]  once whole is longer and does not end in U+FFFD

after which the window moves up (start = read, read = len(ids)), so each step
decodes a few tokens, not the whole answer. ``finish()`` emits what is left
(a genuinely broken byte sequence then shows as U+FFFD, as ``decode`` does).
"""

from __future__ import annotations

from collections.abc import Callable

REPLACEMENT = "\ufffd"


class StreamDecoder:
    """Feed ids with ``push``; each call returns the new text that is complete (maybe "")."""

    def __init__(self, decode: Callable[[list[int]], str]):
        self._decode = decode
        self.ids: list[int] = []
        self._start = 0
        self._read = 0

    def push(self, *ids: int) -> str:
        self.ids.extend(int(i) for i in ids)
        shown = self._decode(self.ids[self._start : self._read])
        whole = self._decode(self.ids[self._start :])
        if len(whole) > len(shown) and not whole.endswith(REPLACEMENT):
            self._start, self._read = self._read, len(self.ids)
            return whole[len(shown) :]
        return ""

    def finish(self) -> str:
        """The text of the tokens not emitted yet (incomplete characters included, as U+FFFD)."""
        shown = self._decode(self.ids[self._start : self._read])
        whole = self._decode(self.ids[self._start :])
        self._start = self._read = len(self.ids)
        return whole[len(shown) :]
