"""What weight-only quantization costs in accuracy, on a model trained by archzoo's own loop.

    python benchmarks/quant_accuracy.py                    # trains llama-tiny (600 steps: ~1 min quiet, ~20 loaded), then the table
    python benchmarks/quant_accuracy.py --run runs/llama-tiny   # reuse a run folder of `archzoo train`
    python benchmarks/quant_accuracy.py --quick            # a few seconds: checks the script runs

Random weights hide quantization error (their rows have no structure to
lose), so the model is trained first: ``archzoo train`` on the shipped
Shakespeare sample (UTF-8 bytes), with its validation tail held out. Then,
on that held-out tail:

- perplexity of the float model and of each quantized one (``archzoo.train.evaluate``:
  mean next-token loss over non-overlapping windows, exp'd);
- top-1 agreement: greedy decoding from held-out prompts, float against quantized, the
  fraction of generated tokens that match position by position (after a first mismatch the
  contexts differ, so this is a strict measure).

Targets (issue 16): int8 perplexity within +1% of float, int4 (group 128) within +5%;
group sizes 32, 64 and 128 are reported, and ChatGLM-6B's INT4 form (symmetric, one group
per row) beside them.

Measured (loaded 2-core AMD EPYC Zen 5; llama-tiny, 600 steps of ``archzoo train`` on the
Shakespeare sample in 19.4 min, val loss 1.738; held-out tail 19,968 tokens, windows of 128;
greedy agreement over 16 prompts x 32 tokens):

    weights                  perplexity  vs float  top-1 agree
    float32                      5.6744
    int8                         5.6747    +0.01%       100.0%
    int4 g128                    5.7048    +0.54%        90.0%
    int4 g64                     5.6967    +0.39%        72.3%
    int4 g32                     5.6823    +0.14%        91.4%
    int4 per-row symmetric       5.7147    +0.71%        66.4%

Greedy agreement is strict (one flipped token changes every later context), so it moves in
steps of whole continuations and is not monotone in the group size over 16 prompts.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import archzoo
from archzoo.train import data as data_mod
from archzoo.train.evaluate import evaluate


def train(out: Path, steps: int) -> Path:
    command = [sys.executable, "-m", "archzoo", "train", "llama-tiny", "--steps", str(steps), "--out", str(out), "--no-progress"]
    print("training:", " ".join(command[2:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"trained {steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def held_out(run: Path) -> tuple[torch.Tensor, int]:
    info = json.loads((run / "run.json").read_text(encoding="utf-8"))
    settings = info["settings"]
    text = info["data"]["text"]  # the run's own text: its validation tail was never trained on
    tokenizer = data_mod.tokenizer_for(archzoo.load_pretrained(run / "model").config.model.vocab_size, info.get("tokenizer"))
    ids = data_mod.encode_documents(data_mod.read_text(text), tokenizer)
    return data_mod.split(ids, settings["val_fraction"], settings["seq_len"], text).val, settings["seq_len"]


@torch.inference_mode()
def greedy_agreement(reference: torch.nn.Module, model: torch.nn.Module, prompts: torch.Tensor, new: int) -> float:
    want, got = (archzoo.generate(m, prompts, max_new_tokens=new)[:, -new:] for m in (reference, model))
    return (want == got).float().mean().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a run folder of archzoo train (default: train one now)")
    parser.add_argument("--steps", type=int, default=600, help="training steps when training here (default 600)")
    parser.add_argument("--quick", action="store_true", help="a short training and few prompts: checks the script runs")
    parser.add_argument("--keep", type=Path, default=None, help="train into this folder (kept) instead of a temporary one")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or train(args.keep or Path(tmp) / "run", 20 if args.quick else args.steps)
        model = archzoo.load_pretrained(run / "model").float().eval()
        val, seq_len = held_out(run)
        windows = data_mod.fixed_windows(val, 32)
        prompts = windows[: 4 if args.quick else 16, :32]
        new = 8 if args.quick else 32
        base = evaluate(model, val, seq_len=seq_len, progress=False)
        print(f"\n{model.config.name} trained by archzoo train ({run}); held-out tail: {base.tokens:,} tokens, "
              f"windows of {seq_len}; greedy agreement over {prompts.shape[0]} prompts x {new} tokens")
        print(f"{'weights':24} {'perplexity':>10} {'vs float':>9} {'top-1 agree':>12}")
        print(f"{'float32':24} {base.perplexity:10.4f} {'':>9} {'':>12}")
        for mode, group, symmetric in [("int8", 128, False), ("int4", 128, False), ("int4", 64, False), ("int4", 32, False),
                                       ("int4", None, True)]:
            quantized = archzoo.quantize(copy.deepcopy(model), mode, group, symmetric=symmetric)
            result = evaluate(quantized, val, seq_len=seq_len, progress=False)
            agree = greedy_agreement(model, quantized, prompts, new)
            label = mode if mode == "int8" else f"int4 g{group}" if group else "int4 per-row symmetric"
            print(f"{label:24} {result.perplexity:10.4f} {100 * (result.perplexity / base.perplexity - 1):+8.2f}% {100 * agree:11.1f}%")


if __name__ == "__main__":
    main()
