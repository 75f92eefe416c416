"""ChatGLM-6B end to end: a ChatGLMModel folder (glm-tiny's network with random weights, saved by
archzoo) with the ice_text-like tokenizer of conftest has no chat_template, so ``archzoo chat`` uses
ChatGLM-6B's own prompt. The expected prompts are written here from ChatGLM-6B's ``chat()`` (first
question alone; then ``[Round i]\\n问：q\\n答：a\\n`` rounds from 0) and encoded with sentencepiece
directly (whitespace pieces, +20,000, ``[gMASK] <sop>``); ``archzoo.generate`` decodes them
until ``<eop>``. The CLI must print those answers, turn after turn."""

from __future__ import annotations

import io
import shutil

import sentencepiece as spm
import torch
from test_ice_text import OFFSET, glm_preprocess

import archzoo
from archzoo.cli import main

QUESTIONS = ["你好", "讲个  笑话\t吧"]
NEW_TOKENS = 12


def test_chat_uses_the_chatglm6b_round_prompt(capsys, monkeypatch, folders, tmp_path):
    sp = spm.SentencePieceProcessor(model_file=str(folders["chatglm"] / "ice_text.model"))
    piece = {p: sp.piece_to_id(p) + OFFSET for p in ("[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<pad>")}
    cfg = archzoo.load_config("glm-tiny").to_dict()
    cfg["model"]["vocab_size"] = OFFSET + sp.get_piece_size()
    cfg["tokens"] = {"mask_id": piece["[MASK]"], "gmask_id": piece["[gMASK]"], "smask_id": piece["[sMASK]"],
                     "sop_id": piece["<sop>"], "eop_id": piece["<eop>"], "bos_id": piece["<sop>"],
                     "eos_id": piece["<eop>"], "pad_id": piece["<pad>"]}  # fmt: skip
    torch.manual_seed(0)
    model = archzoo.build_model(archzoo.Config.from_dict(cfg, "glm-tiny, ice_text vocabulary")).eval()
    with torch.no_grad():  # image ids (< 20,000) decode to no text: keep greedy decoding on text ids
        model.lm_head.weight[:OFFSET] = 0
        model.lm_head.weight[OFFSET:] *= 20
    folder = archzoo.save_pretrained(model, tmp_path / "chatglm-tiny")
    for name in ("ice_text.model", "tokenizer_config.json"):
        shutil.copy(folders["chatglm"] / name, folder / name)
    tok = archzoo.load_tokenizer(folder)
    reloaded = archzoo.load_pretrained(folder).eval()

    history, answers = [], []
    for question in QUESTIONS:
        if not history:
            prompt = question
        else:
            prompt = "".join(f"[Round {i}]\n问：{q}\n答：{a}\n" for i, (q, a) in enumerate(history))
            prompt += f"[Round {len(history)}]\n问：{question}\n答："
        ids = [i + OFFSET for i in sp.encode(glm_preprocess(prompt))] + [piece["[gMASK]"], piece["<sop>"]]
        new = archzoo.generate(reloaded, torch.tensor([ids]), NEW_TOKENS, eos_id=piece["<eop>"])[0].tolist()
        answer = tok.decode([i for i in new if i != piece["<eop>"]], skip_special_tokens=True)
        history.append((question, answer))
        answers.append(answer)
    assert all(answers), "empty answers would prove little"

    monkeypatch.setattr("sys.stdin", io.StringIO("".join(q + "\n" for q in QUESTIONS)))
    assert main(["chat", str(folder), "--max-new-tokens", str(NEW_TOKENS)]) == 0
    assert capsys.readouterr().out == "".join(a + "\n" for a in answers)
