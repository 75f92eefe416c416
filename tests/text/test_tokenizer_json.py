"""tokenizer.json folders (BPE and Unigram, trained in conftest) against the tokenizers library
and against transformers.AutoTokenizer reading the same folder: ids, text, special tokens, chat."""

from __future__ import annotations

import pytest
import transformers
from tokenizer_corpus import PARITY_TEXTS, WITH_SPECIALS
from tokenizers import Tokenizer as ReferenceTokenizer

import archzoo

FORMATS = ["bpe-json", "unigram-json"]
CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "你好！What is 2+2?"},
    {"role": "assistant", "content": "4 😀"},
    {"role": "user", "content": "And   twice\tthat?"},
]


@pytest.mark.parametrize("name", FORMATS)
def test_ids_and_text_equal_the_tokenizers_library(folders, name):
    tok = archzoo.load_tokenizer(folders[name])
    reference = ReferenceTokenizer.from_file(str(folders[name] / "tokenizer.json"))
    for text in PARITY_TEXTS + WITH_SPECIALS:
        for add in (True, False):
            expected = reference.encode(text, add_special_tokens=add).ids
            assert tok.encode(text, add_special_tokens=add) == expected, (text, add)
        ids = reference.encode(text).ids
        assert tok.decode(ids) == reference.decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("name", FORMATS)
def test_ids_text_and_special_tokens_equal_transformers(folders, name):
    tok = archzoo.load_tokenizer(folders[name])
    hf = transformers.AutoTokenizer.from_pretrained(folders[name])
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (hf.bos_token_id, hf.eos_token_id, hf.pad_token_id)
    assert tok.vocab_size == len(hf)
    for text in PARITY_TEXTS + WITH_SPECIALS:
        ids = hf.encode(text)
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == hf.decode(ids), text
        assert tok.decode(ids, skip_special_tokens=True) == hf.decode(ids, skip_special_tokens=True), text


def test_chat_template_renders_and_encodes_as_transformers(folders):
    tok = archzoo.load_tokenizer(folders["bpe-json"])
    hf = transformers.AutoTokenizer.from_pretrained(folders["bpe-json"])
    for add in (True, False):
        assert tok.apply_chat_template(CONVERSATION, add_generation_prompt=add) == hf.apply_chat_template(
            CONVERSATION, tokenize=False, add_generation_prompt=add
        )
        assert tok.encode_chat(CONVERSATION, add_generation_prompt=add) == hf.apply_chat_template(
            CONVERSATION, add_generation_prompt=add, return_dict=False
        )
    assert tok.token_to_id("<|im_end|>") in tok.stop_ids and tok.eos_id in tok.stop_ids


def test_batch_is_left_padded_with_a_mask(folders):
    tok = archzoo.load_tokenizer(folders["bpe-json"])
    texts = ["Hello world", "你好", "emoji 😀🎉 in a longer row of text"]
    batch = tok.encode_batch(texts)
    width = max(len(tok.encode(t)) for t in texts)
    assert list(batch.input_ids.shape) == [3, width] == list(batch.attention_mask.shape)
    for row, text in enumerate(texts):
        ids = tok.encode(text)
        pad = width - len(ids)
        assert batch.input_ids[row].tolist() == [tok.pad_id] * pad + ids
        assert batch.attention_mask[row].tolist() == [0] * pad + [1] * len(ids)
    hf = transformers.AutoTokenizer.from_pretrained(folders["bpe-json"], padding_side="left")
    expected = hf(texts, padding=True)
    assert batch.input_ids.tolist() == expected["input_ids"]
    assert batch.attention_mask.tolist() == expected["attention_mask"]
