"""``archzoo generate``: configs get seeded random weights, folders load a checkpoint,
text prompts become UTF-8 byte ids, and bad input is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import archzoo
from archzoo.cli import main


def run_json(capsys, *argv: str) -> dict:
    assert main(["generate", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_config_name_decodes_greedily_from_a_seeded_model(capsys):
    report = run_json(capsys, "llama-tiny", "--prompt-ids", "1,2,3", "--max-new-tokens", "6", "--seed", "4")
    torch.manual_seed(4)
    model = archzoo.build_model("llama-tiny").eval()
    expected = archzoo.generate(model, torch.tensor([[1, 2, 3]]), 6)
    assert report["prompt_ids"] == [1, 2, 3]
    assert report["new_ids"] == expected[0].tolist()
    assert report["decode_steps"] == 5 and report["decode_ms_per_token"] >= 0  # a coarse clock may read 0


def test_text_prompt_is_utf8_bytes(capsys):
    report = run_json(capsys, "llama-tiny", "--prompt", "héllo", "--max-new-tokens", "2")
    assert report["prompt_ids"] == [104, 195, 169, 108, 108, 111]


def test_glm2d_prompt_gets_gmask_and_sop(capsys):
    cfg = archzoo.load_config("glm-tiny")
    report = run_json(capsys, "glm-tiny", "--prompt-ids", "5,6", "--max-new-tokens", "2")
    assert report["prompt_ids"] == [5, 6, cfg.tokens.gmask_id, cfg.tokens.sop_id]


def test_checkpoint_folder_is_loaded(capsys, tmp_path):
    torch.manual_seed(1)
    model = archzoo.build_model("qwen2-tiny").eval()
    folder = archzoo.save_pretrained(model, tmp_path / "ckpt")
    report = run_json(capsys, str(folder), "--prompt-ids", "7,8,9,10", "--max-new-tokens", "5")
    assert report["new_ids"] == archzoo.generate(model, torch.tensor([[7, 8, 9, 10]]), 5)[0].tolist()


def test_small_vocabulary_refuses_text(capsys, tmp_path):
    text = Path(archzoo.load_config("llama-tiny").path).read_text()
    small = tmp_path / "small.toml"
    small.write_text(text.replace("vocab_size = 512", "vocab_size = 200"))
    assert main(["generate", str(small), "--prompt", "hi"]) == 2
    err = capsys.readouterr().err
    assert "vocabulary of 200 tokens" in err and "--prompt-ids" in err


def test_bad_prompt_ids_are_named(capsys):
    assert main(["generate", "llama-tiny", "--prompt-ids", "1,x"]) == 2
    assert "--prompt-ids" in capsys.readouterr().err
    assert main(["generate", "llama-tiny", "--prompt-ids", "1,9999"]) == 2
    assert "outside the vocabulary" in capsys.readouterr().err


def test_human_output_shows_tokens_and_speed(capsys):
    assert main(["generate", "bloom-tiny", "--prompt-ids", "1,2", "--max-new-tokens", "4"]) == 0
    out = capsys.readouterr().out
    assert "new:     4 tokens" in out and "tokens/s" in out and "ms/token" in out
