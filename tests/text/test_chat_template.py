"""Chat templates are rendered as transformers renders them, and the end-of-turn token is found."""

from __future__ import annotations

import json
import shutil

import pytest
import transformers

import archzoo
from archzoo.errors import InputError

LLAMA3_LIKE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] not in ['user', 'assistant'] %}{{ raise_exception('Only user and assistant roles') }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n\n' + message['content'] | trim + '<|im_end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n\n' }}{% endif %}"
)


@pytest.fixture
def llama3_like(folders, tmp_path):
    folder = shutil.copytree(folders["bpe-json"], tmp_path / "llama3-like")
    config = json.loads((folder / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "chat_template.jinja").write_text(LLAMA3_LIKE)  # how transformers 5 saves a template
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 3]}))
    return folder


def test_template_file_variables_and_stop_tokens(llama3_like):
    tok = archzoo.load_tokenizer(llama3_like)
    hf = transformers.AutoTokenizer.from_pretrained(llama3_like)
    messages = [
        {"role": "user", "content": "  你好 "},
        {"role": "assistant", "content": "嗨"},
        {"role": "user", "content": "x"},
    ]
    rendered = tok.apply_chat_template(messages)
    assert rendered.startswith("<s><|im_start|>user\n\n你好<|im_end|>")
    assert rendered == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert tok.stop_ids == {tok.eos_id, 3, tok.token_to_id("<|im_end|>")}


def test_raise_exception_is_an_input_error_naming_the_folder(llama3_like):
    tok = archzoo.load_tokenizer(llama3_like)
    with pytest.raises(InputError, match="llama3-like: chat template: Only user and assistant roles"):
        tok.apply_chat_template([{"role": "system", "content": "x"}])
    with pytest.raises(InputError, match="messages"):
        tok.apply_chat_template([])


def test_no_template_is_a_clear_error(folders):
    tok = archzoo.load_tokenizer(folders["unigram-json"])
    assert tok.chat_template is None
    with pytest.raises(InputError, match="no chat_template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_the_sandbox_refuses_python_internals(folders, tmp_path):
    folder = shutil.copytree(folders["bpe-json"], tmp_path / "evil")
    (folder / "chat_template.jinja").write_text("{{ messages.__class__.__mro__ }}")
    with pytest.raises(InputError, match="chat template"):
        archzoo.load_tokenizer(folder).apply_chat_template([{"role": "user", "content": "x"}])
