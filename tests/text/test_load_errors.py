"""load_tokenizer finds the vocabulary file, and a bad folder is a CheckpointError naming the file."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

import archzoo
from archzoo.errors import CheckpointError, InputError
from archzoo.text import MissingTextExtra


def copy(folders, name, tmp_path):
    return shutil.copytree(folders[name], tmp_path / name)


def test_each_format_is_detected(folders):
    formats = {name: archzoo.load_tokenizer(folder).format for name, folder in folders.items()}
    assert formats == {
        "bpe-json": "tokenizer.json", "unigram-json": "tokenizer.json",
        "sp-bpe": "SentencePiece tokenizer.model", "sp-unigram": "SentencePiece tokenizer.model",
        "qwen": "tiktoken BPE", "chatglm": "ChatGLM-6B ice_text.model",
    }  # fmt: skip


def test_folder_without_a_vocabulary(tmp_path):
    with pytest.raises(CheckpointError, match="no tokenizer.*tokenizer.json.*tokenizer.model"):
        archzoo.load_tokenizer(tmp_path)
    with pytest.raises(CheckpointError, match="not a folder"):
        archzoo.load_tokenizer(tmp_path / "absent")


@pytest.mark.parametrize(
    ("name", "file", "content", "message"),
    [
        ("bpe-json", "tokenizer.json", "{not json", "tokenizer.json: not a tokenizers file"),
        ("sp-bpe", "tokenizer.model", "garbage", "tokenizer.model: not a SentencePiece model"),
        ("qwen", "qwen.tiktoken", "SGVsbG8= 0\nnot-base64!! x\n", "qwen.tiktoken: line 2"),
        ("bpe-json", "tokenizer_config.json", "{broken", "tokenizer_config.json: not valid JSON"),
        ("sp-bpe", "generation_config.json", '{"eos_token_id": "x"}', "generation_config.json: eos_token_id"),
    ],
)
def test_broken_files_are_named(folders, tmp_path, name, file, content, message):
    folder = copy(folders, name, tmp_path)
    (folder / file).write_text(content)
    with pytest.raises(CheckpointError, match=message):
        archzoo.load_tokenizer(folder)


def test_special_token_outside_the_vocabulary_is_named(folders, tmp_path):
    folder = copy(folders, "bpe-json", tmp_path)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "eos_token": "<|nope|>"}))
    with pytest.raises(CheckpointError, match="eos_token '<\\|nope\\|>' is not in the vocabulary"):
        archzoo.load_tokenizer(folder)


def test_missing_library_names_the_extra(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "sentencepiece", None)  # what `import sentencepiece` sees when absent
    with pytest.raises(MissingTextExtra, match=r"tokenizer.model needs the sentencepiece library.*archzoo\[text\]"):
        archzoo.load_tokenizer(folders["sp-bpe"])


def test_bad_ids_and_texts_are_input_errors(folders):
    tok = archzoo.load_tokenizer(folders["qwen"])
    with pytest.raises(InputError, match="outside the vocabulary"):
        tok.decode([151851])
    with pytest.raises(InputError, match="neither BPE ranks nor special tokens"):
        tok.decode([151000])  # between the small file's last rank and the first special id
    with pytest.raises(InputError, match="text must be a str"):
        tok.encode(["a"])
