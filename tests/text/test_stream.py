"""Streaming decode: text pushed one id at a time adds up to decode(all ids), and a character
split over several byte tokens appears only once it is whole."""

from __future__ import annotations

import pytest
from tokenizer_corpus import PARITY_TEXTS

import archzoo
from archzoo.text.stream import REPLACEMENT

ALL = ["bpe-json", "unigram-json", "sp-bpe", "sp-unigram", "qwen", "chatglm"]


@pytest.mark.parametrize("name", ALL)
def test_streamed_pieces_add_up_to_the_decoded_text(folders, name):
    tok = archzoo.load_tokenizer(folders[name])
    for text in PARITY_TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        stream = tok.stream_decoder()
        pieces = [stream.push(i) for i in ids] + [stream.finish()]
        assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True), (name, text)
        assert not any(REPLACEMENT in p for p in pieces), (name, text)


def test_a_character_split_over_byte_tokens_waits_until_whole(folders):
    tok = archzoo.load_tokenizer(folders["qwen"])
    ids = tok.encode("🎉")
    assert len(ids) > 1 and REPLACEMENT in tok.decode(ids[:1])  # the emoji's 4 bytes span several tokens
    stream = tok.stream_decoder()
    assert [stream.push(i) for i in ids[:-1]] == [""] * (len(ids) - 1)
    assert stream.push(ids[-1]) == "🎉"
    assert stream.finish() == ""
