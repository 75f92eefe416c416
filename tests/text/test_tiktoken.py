"""A qwen.tiktoken file written from a byte-level BPE trained here with Qwen v1's regex as its
pre-tokenizer: tiktoken's lowest-rank-first merging must give exactly the BPE's tokens, and the
special tokens get Qwen's ids from 151643."""

from __future__ import annotations

import unicodedata

from tokenizer_corpus import PARITY_TEXTS
from tokenizers import Tokenizer as ReferenceTokenizer

import archzoo


def token_bytes(reference, ids):
    from tokenizer_corpus import _bytes_to_unicode

    byte_of = {ch: b for b, ch in enumerate(_bytes_to_unicode())}
    return [bytes(byte_of[c] for c in reference.id_to_token(i)) for i in ids]


def test_tokens_equal_the_bpe_the_file_was_written_from(folders):
    tok = archzoo.load_tokenizer(folders["qwen"])
    reference = ReferenceTokenizer.from_file(str(folders["qwen"].parent / "qwen-source-bpe.json"))
    bytes_of = {rank: token for token, rank in tok.ranks.items()}
    for text in PARITY_TEXTS:
        ids = tok.encode(text)
        expected = token_bytes(reference, reference.encode(text).ids)
        assert [bytes_of[i] for i in ids] == expected, text
        assert tok.decode(ids) == text


def test_qwen_special_tokens_and_their_ids(folders):
    tok = archzoo.load_tokenizer(folders["qwen"])
    assert tok.token_to_id("<|endoftext|>") == 151643 == tok.eos_id
    assert tok.token_to_id("<|im_start|>") == 151644
    assert tok.token_to_id("<|im_end|>") == 151645
    assert tok.token_to_id("<|extra_0|>") == 151646 and tok.token_to_id("<|extra_204|>") == 151850
    assert tok.vocab_size == 151851 and tok.bos_id is None
    ids = tok.encode("<|im_start|>user\n你好<|im_end|>")
    assert ids[0] == 151644 and ids[-1] == 151645 and 151644 not in ids[1:-1]
    assert tok.decode(ids) == "<|im_start|>user\n你好<|im_end|>"
    assert tok.decode(ids, skip_special_tokens=True) == "user\n你好"
    assert {151643, 151644, 151645} <= tok.stop_ids


def test_text_is_nfc_normalised_first(folders):
    tok = archzoo.load_tokenizer(folders["qwen"])
    decomposed = "Ωμε\u0301γα"
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    assert tok.encode(decomposed) == tok.encode(unicodedata.normalize("NFC", decomposed))


def test_chatml_is_its_chat_format(folders):
    tok = archzoo.load_tokenizer(folders["qwen"])
    prompt = tok.apply_chat_template([{"role": "user", "content": "你好"}])
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
