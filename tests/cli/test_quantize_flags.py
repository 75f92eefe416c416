"""--quantize / --group-size on generate, bench and eval: the model runs quantized, bad values are one line."""

from __future__ import annotations

import json

import pytest

import archzoo
from archzoo.cli import main


def test_eval_quantized_folder_and_flag(tmp_path, capsys):
    model = archzoo.build_model("llama-tiny")
    archzoo.save_pretrained(model, tmp_path / "f")
    text = tmp_path / "t.txt"
    text.write_text("To be, or not to be, that is the question. " * 20, encoding="utf-8")
    losses = {}
    for flags in ([], ["--quantize", "int8"], ["--quantize", "int4", "--group-size", "32"]):
        assert main(["eval", str(tmp_path / "f"), "--text", str(text), "--seq-len", "64", "--json", "--no-progress", *flags]) == 0
        losses[tuple(flags)] = json.loads(capsys.readouterr().out)["loss"]
    plain, int8, int4 = losses.values()
    assert plain != int8 and plain != int4  # the flag changed the weights the loss was computed with
    assert abs(int8 - plain) < 0.05 * plain  # ... and not into nonsense


def test_generate_and_bench_take_the_flags(capsys):
    assert main(["generate", "llama-tiny", "--prompt-ids", "1,2,3", "--max-new-tokens", "3", "--quantize", "int4"]) == 0
    assert main(["bench", "llama-tiny", "--quantize", "int8", "--repeats", "1", "--new-tokens", "2", "--seq-len", "4", "--json"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("flags", [["--quantize", "int3"], ["--quantize", "int4", "--group-size", "0"]])
def test_bad_values_are_refused_in_one_line(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "llama-tiny", *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert ("--quantize" in err or "--group-size" in err) and "Traceback" not in err
