"""Qwen v1 end to end: a QWenLMHeadModel folder (a tiny Qwen network with random weights, saved by
archzoo) with the qwen.tiktoken of conftest has no chat_template, so ``archzoo chat`` uses Qwen's
ChatML (``make_context``: the default system prompt, ``<|im_start|>role\\ncontent<|im_end|>`` turns
joined by newlines). The expected prompts are written here and encoded with tiktoken directly (Qwen's
regex, specials from 151643); ``archzoo.generate`` decodes them, and an answer ends at the first
``<|im_end|>``, ``<|im_start|>`` or ``<|endoftext|>`` (Qwen's stop words)."""

from __future__ import annotations

import base64
import io
import json
import shutil

import tiktoken
import torch
from tokenizer_corpus import QWEN_PATTERN

import archzoo
from archzoo.cli import main

QUESTIONS = ["你好", "emoji 😀 and   spaces?"]
NEW_TOKENS = 12
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205))]


def reference_encoding(folder) -> tuple[tiktoken.Encoding, dict[bytes, int]]:
    lines = (folder / "qwen.tiktoken").read_text().split()
    ranks = {base64.b64decode(token): int(rank) for token, rank in zip(lines[::2], lines[1::2])}
    specials = {text: 151643 + i for i, text in enumerate(SPECIALS)}
    enc = tiktoken.Encoding("qwen-reference", pat_str=QWEN_PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    return enc, ranks


def test_chat_uses_chatml_and_stops_at_im_end(capsys, monkeypatch, folders, tmp_path):
    enc, ranks = reference_encoding(folders["qwen"])
    cfg = archzoo.load_config("qwen2-tiny").to_dict()
    cfg["model"].update(vocab_size=enc.n_vocab, d_model=32, tie_embeddings=False)
    cfg["attention"].update(n_heads=4, n_kv_heads=4)  # Qwen v1: one kv head per query head
    cfg["mlp"]["hidden"] = 64
    cfg.pop("tokens", None)
    torch.manual_seed(0)
    model = archzoo.build_model(archzoo.Config.from_dict(cfg, "qwen v1 tiny")).eval()
    real = torch.zeros(enc.n_vocab, dtype=torch.bool)
    real[list(ranks.values())] = True
    real[151643:] = True
    with torch.no_grad():  # ids between the small file's ranks and 151643 exist in no real file: never pick them
        model.lm_head.weight[~real] = 0
        model.lm_head.weight[real] *= 20
    folder = archzoo.save_pretrained(model, tmp_path / "qwen-tiny", architecture="QWenLMHeadModel")
    for name in ("qwen.tiktoken", "tokenizer_config.json"):
        shutil.copy(folders["qwen"] / name, folder / name)
    reloaded = archzoo.load_pretrained(folder).eval()
    stop = {151643, 151644, 151645}

    turns, answers = [], []
    for question in QUESTIONS:
        turns.append(("user", question))
        prompt = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>"
        prompt += "".join(f"\n<|im_start|>{role}\n{text}<|im_end|>" for role, text in turns)
        prompt += "\n<|im_start|>assistant\n"
        ids = enc.encode(prompt, allowed_special="all")
        new = archzoo.generate(reloaded, torch.tensor([ids]), NEW_TOKENS)[0].tolist()
        new = new[: next((k for k, i in enumerate(new) if i in stop), len(new))]
        answer = enc.decode([i for i in new if i < 151643], errors="replace")  # shown without special tokens
        turns.append(("assistant", answer))
        answers.append(answer)
    assert all(answers), "empty answers would prove little"

    monkeypatch.setattr("sys.stdin", io.StringIO("".join(q + "\n" for q in QUESTIONS)))
    assert main(["chat", str(folder), "--max-new-tokens", str(NEW_TOKENS)]) == 0
    assert capsys.readouterr().out == "".join(a + "\n" for a in answers)

    assert main(["generate", str(folder), "--prompt", "你好 world", "--max-new-tokens", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prompt_ids"] == enc.encode("你好 world")  # no bos: Qwen v1 adds none
    assert report["tokenizer"].startswith("tiktoken BPE")
