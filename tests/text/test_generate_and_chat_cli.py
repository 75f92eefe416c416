"""``archzoo generate FOLDER --prompt`` and ``archzoo chat FOLDER`` on a folder built here - a tiny LLaMA
trained for 40 steps on chat-formatted text of the corpus, saved by transformers, plus the BPE
tokenizer trained in conftest and its ChatML template - print exactly the text transformers produces
from the same folder (greedy, token for token), and a folder without a tokenizer is refused."""

from __future__ import annotations

import io
import json
import shutil

import pytest
import torch
import transformers
from tokenizer_corpus import TRAIN

import archzoo
from archzoo.cli import main

PROMPTS = ["你好，世界", "The quick brown"]
QUESTIONS = ["你好", "emoji: 😀 and   spaces?", "What next?"]
NEW_TOKENS = 24


@pytest.fixture(scope="module")
def chat_folder(folders, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat-model") / "tiny-chat"
    tok = transformers.AutoTokenizer.from_pretrained(folders["bpe-json"])
    config = transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    texts = [
        tok.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False)
        for q, a in zip(TRAIN, TRAIN[1:] + TRAIN[:1])
    ]
    batch = tok(texts, padding=True, return_tensors="pt")
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(40):  # ~2 s: answers in the corpus' words, Chinese and emoji included (loss ~6 -> 0.25)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval().save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folders["bpe-json"] / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def reference(chat_folder):
    tok = transformers.AutoTokenizer.from_pretrained(chat_folder)
    model = transformers.AutoModelForCausalLM.from_pretrained(chat_folder, dtype=torch.float32).eval()
    return tok, model


def hf_greedy(model, ids: list[int], stop: list[int]) -> list[int]:
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, eos_token_id=stop,
                             pad_token_id=stop[0])  # fmt: skip
    return out[0, len(ids) :].tolist()


@pytest.mark.parametrize("prompt", PROMPTS)
def test_generate_prompt_equals_transformers(capsys, chat_folder, reference, prompt):
    tok, model = reference
    assert main(["generate", str(chat_folder), "--prompt", prompt, "--max-new-tokens", str(NEW_TOKENS), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    ids = tok.encode(prompt)
    expected = hf_greedy(model, ids, [tok.eos_token_id])
    assert report["prompt_ids"] == ids
    assert report["new_ids"] == expected
    assert report["text"] == tok.decode(expected, skip_special_tokens=True)

    assert main(["generate", str(chat_folder), "--prompt", prompt, "--max-new-tokens", str(NEW_TOKENS)]) == 0
    streamed = capsys.readouterr().out.split("text:    ", 1)[1].split("\nnew:", 1)[0]
    assert streamed == report["text"]


def test_chat_equals_transformers_over_several_turns(capsys, monkeypatch, chat_folder, reference):
    tok, model = reference
    stop = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    messages, expected = [], []
    for question in QUESTIONS:
        messages.append({"role": "user", "content": question})
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=False)
        new = hf_greedy(model, ids, stop)
        answer = tok.decode(new[:-1] if new and new[-1] in stop else new, skip_special_tokens=True)
        messages.append({"role": "assistant", "content": answer})
        expected.append(answer)
    assert any(expected), "the answers are all empty: the test would prove little"

    monkeypatch.setattr("sys.stdin", io.StringIO("".join(q + "\n" for q in QUESTIONS)))
    assert main(["chat", str(chat_folder), "--max-new-tokens", str(NEW_TOKENS)]) == 0
    assert capsys.readouterr().out == "".join(answer + "\n" for answer in expected)


def test_chat_reset_starts_over(capsys, monkeypatch, chat_folder):
    monkeypatch.setattr("sys.stdin", io.StringIO("你好\n"))
    assert main(["chat", str(chat_folder), "--max-new-tokens", "8"]) == 0
    once = capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("你好\n/reset\n\n你好\n/exit\nnot read\n"))
    assert main(["chat", str(chat_folder), "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out == once + once


def test_folder_without_tokenizer_is_refused(capsys, chat_folder, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(chat_folder / name, bare / name)
    assert main(["generate", str(bare), "--prompt", "hello"]) == 2
    err = capsys.readouterr().err
    assert "no tokenizer" in err and "is not bytes" in err and "--prompt-ids" in err and str(bare) in err
    assert main(["generate", str(bare), "--prompt", "hello", "--tokenizer", str(chat_folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt_ids"][0] == 1  # the tokenizer's bos
    assert main(["chat", str(bare)]) == 2
    assert "no tokenizer" in capsys.readouterr().err


def test_left_padded_batch_generates_what_transformers_generates(chat_folder, reference):
    tok, model = reference
    ours = archzoo.load_tokenizer(chat_folder)
    batch = ours.encode_batch(PROMPTS + ["emoji: 😀 🎉 and a much longer prompt than the others"])
    new = archzoo.generate(archzoo.load_pretrained(chat_folder).eval(), batch.input_ids, NEW_TOKENS,
                           attention_mask=batch.attention_mask, eos_id=ours.eos_id)  # fmt: skip
    with torch.no_grad():
        out = model.generate(batch.input_ids, attention_mask=batch.attention_mask, max_new_tokens=NEW_TOKENS,
                             do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)  # fmt: skip
    expected = out[:, batch.input_ids.shape[1] :]
    assert new.tolist() == expected[:, : new.shape[1]].tolist()
    assert ours.decode(new[0], skip_special_tokens=True) == tok.decode(expected[0], skip_special_tokens=True)
