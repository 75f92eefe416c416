"""An ice_text.model like ChatGLM-6B's (a SentencePiece model with <n>, <|tab|>, <|blank_N|> and the
GLM tokens as pieces, trained in conftest), against the sentencepiece library with ChatGLM-6B's
documented steps: whitespace pieces, ids shifted by the 20,000 image tokens, [gMASK] <sop> appended."""

from __future__ import annotations

import sentencepiece as spm
from tokenizer_corpus import PARITY_TEXTS

import archzoo

OFFSET = 20000


def glm_preprocess(text: str) -> str:
    """ChatGLM-6B's SPTokenizer._preprocess, written from its description: newline, tab, runs of 2-80 spaces."""
    text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
    for n in range(80, 1, -1):
        text = text.replace(" " * n, f"<|blank_{n}|>")
    return text


def test_ids_are_sentencepiece_ids_after_the_image_tokens(folders):
    tok = archzoo.load_tokenizer(folders["chatglm"])
    sp = spm.SentencePieceProcessor(model_file=str(folders["chatglm"] / "ice_text.model"))
    gmask, sop, eop = (sp.piece_to_id(p) + OFFSET for p in ("[gMASK]", "<sop>", "<eop>"))
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (sop, eop, sp.piece_to_id("<pad>") + OFFSET)
    assert tok.vocab_size == OFFSET + sp.get_piece_size()
    for text in PARITY_TEXTS:
        pieces = [i + OFFSET for i in sp.encode(glm_preprocess(text))]
        assert tok.encode(text) == pieces + [gmask, sop], text
        assert tok.encode(text, add_special_tokens=False) == pieces, text


def test_whitespace_survives_the_round_trip_and_image_ids_are_dropped(folders):
    tok = archzoo.load_tokenizer(folders["chatglm"])
    text = "def f(x):\n\treturn  x   +\n\n1"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.token_to_id("<|blank_3|>") in ids and tok.token_to_id("<n>") in ids
    assert tok.decode(ids) == text
    assert tok.decode([5, 17, *ids]) == text  # ids below 20,000 are image tokens: no text
    gmask = tok.token_to_id("[gMASK]")
    assert tok.decode([*ids, gmask]) == text + "[gMASK]"
    assert tok.decode([*ids, gmask], skip_special_tokens=True) == text


def test_chatglm6b_round_prompt(folders):
    tok = archzoo.load_tokenizer(folders["chatglm"])
    assert tok.apply_chat_template([{"role": "user", "content": "你好"}]) == "你好"
    history = [
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！有什么可以帮你？"},
        {"role": "user", "content": "讲个笑话"},
    ]
    assert (
        tok.apply_chat_template(history)
        == "[Round 0]\n问：你好\n答：你好！有什么可以帮你？\n[Round 1]\n问：讲个笑话\n答："
    )
    ids = tok.encode_chat(history)
    assert ids[-2:] == [tok.token_to_id("[gMASK]"), tok.bos_id]
    assert tok.stop_ids == {tok.eos_id}
