"""Decode speed: archzoo against transformers on the same weights, batch 1, greedy.

    python benchmarks/bench_decode.py                 # full run (minutes)
    python benchmarks/bench_decode.py --quick         # a few seconds: checks the script runs

For each model: a transformers model with random weights is saved and loaded
into archzoo (``load_pretrained``), or an archzoo tiny config is saved and
loaded into transformers; both then decode the same prompt. A decode step's
time is the median interval between successive forward calls during
``generate`` (prefill excluded; the generation loop's own work included).

At batch 1 a decode step reads every weight once, so memory bandwidth bounds
it: ceiling = bandwidth / bytes of weights read per token (the embedding table
counts only when it is also the output head; every expert of an MoE counts,
so for MoE the ceiling is an underestimate). Bandwidth is measured here by
timing a sum over a tensor much larger than the caches.
archzoo runs twice: ``implementation="reference"`` (``blocks/`` only) and
``"fast"`` (the default, ``fast/``); speed-ups are transformers / archzoo.
Targets (issue 5, for the fast path): the small config >= 1.3x transformers, tiny configs >= 2x.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

import archzoo
from archzoo.config import config_paths
from archzoo.fast import use_implementation
from archzoo.models.hf import ARCHITECTURES

SMALL = transformers.LlamaConfig(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1536,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=8,
    max_position_embeddings=2048,
)
"""The small config of the issue: d_model 512, 8 layers, vocab 32k (LLaMA layout)."""

TINY = sorted(name for name in config_paths() if name.endswith("-tiny"))


def measure_bandwidth(megabytes: int, repeats: int) -> float:
    """Bytes per second of streaming reads: the best of timed sums over a large float32 tensor."""
    x = torch.ones(megabytes * 2**20 // 4)
    x.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - start)
    return x.numel() * 4 / best


def weight_bytes_per_token(model: archzoo.CausalLM) -> int:
    """Bytes of parameters a batch-1 decode step reads (one embedding row only, unless tied to the head)."""
    tied = model.config.model.tie_embeddings
    total = 0
    for name, param in model.named_parameters():  # tied weights are listed once
        if name.startswith("embed.") and not tied:
            continue
        total += param.numel() * param.element_size()
    return total


def step_intervals(model: torch.nn.Module, run) -> list[float]:
    """Times between the starts of successive decode forwards of one ``run()``.

    A forward pre-hook stamps every call of ``model``; the interval after the
    prefill call is skipped, so each interval is one decode step: the forward
    plus the generation loop's own work.
    """
    stamps: list[float] = []
    handle = model.register_forward_pre_hook(lambda module, args: stamps.append(time.perf_counter()))
    try:
        run()
    finally:
        handle.remove()
    return [b - a for a, b in zip(stamps[1:], stamps[2:])]


def step_seconds(runs: dict[str, tuple[torch.nn.Module, object]], repeats: int) -> dict[str, float]:
    """Median decode step of each (model, run) pair, the runs alternating (a, b, a, b, ...)
    so that a machine whose speed drifts slows every side alike. The median
    resists the spikes of a busy machine better than a total does."""
    for model, run in runs.values():
        step_intervals(model, run)  # warm-up
    intervals: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (model, run) in runs.items():
            intervals[name] += step_intervals(model, run)
    return {name: statistics.median(values) for name, values in intervals.items()}


def archzoo_run(model, ids: torch.Tensor, new: int):
    return lambda: archzoo.generate(model, ids, new)


def hf_run(model, ids: torch.Tensor, new: int):
    def run():
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=new,
                min_new_tokens=new,
                eos_token_id=None,
                pad_token_id=0,
            )

    return run


def pair_from_transformers(architecture: str, hf_config, folder: Path):
    torch.manual_seed(0)
    hf_model = getattr(transformers, architecture)(hf_config).eval()
    hf_model.save_pretrained(folder)
    return hf_model, archzoo.load_pretrained(folder).eval()


def reference_twin(model: archzoo.CausalLM) -> archzoo.CausalLM:
    """A copy of ``model`` on the reference path (same weights)."""
    return use_implementation(copy.deepcopy(model), "reference")


def pair_from_archzoo(name: str, folder: Path):
    """(transformers model or None when no architecture expresses the config, archzoo model)."""
    torch.manual_seed(0)
    model = archzoo.build_model(name).eval()
    try:
        saved = archzoo.save_pretrained(model, folder)
    except Exception as err:  # an architecture transformers lacks (e.g. ChatGLM-6B's 2D positions)
        return None, model, f"{type(err).__name__}"
    architecture = json.loads((Path(saved) / "config.json").read_text())["architectures"][0]
    hf_class = getattr(transformers, architecture, None)
    if hf_class is None:  # saved in a format only the original remote code reads (ChatGLMModel)
        return None, model, f"{architecture} is not in transformers"
    return hf_class.from_pretrained(saved).eval(), model, ""


def prompt(model, length: int) -> torch.Tensor:
    """Random ids, completed as the config's decoding scheme expects (e.g. GLM's [gMASK] <sop>)."""
    from archzoo.generate import DECODE_SCHEMES

    cfg = model.config
    ids = torch.randint(1, min(cfg.model.vocab_size, 256), (length,), generator=torch.Generator().manual_seed(0))
    ids = DECODE_SCHEMES[cfg.position.kind].complete_prompt(ids.tolist(), cfg)
    return torch.tensor([ids])


def report(label: str, hf_model, model, new: int, repeats: int, bandwidth: float, note: str = "") -> None:
    ids = prompt(model, 16)
    reference = reference_twin(model)
    runs = {"fast": (model, archzoo_run(model, ids, new)), "reference": (reference, archzoo_run(reference, ids, new))}
    if hf_model is not None:
        runs["transformers"] = (hf_model, hf_run(hf_model, ids, new))
    seconds = step_seconds(runs, repeats)
    fast, ref = seconds["fast"], seconds["reference"]
    ceiling = bandwidth / weight_bytes_per_token(model)
    line = f"{label:16s} reference {ref * 1e3:7.3f} ms/token   fast {fast * 1e3:7.3f} ms/token"
    if hf_model is not None:
        theirs = seconds["transformers"]
        line += f"   transformers {theirs * 1e3:7.3f} ms   speed-up ref {theirs / ref:5.2f}x fast {theirs / fast:5.2f}x"
    else:
        line += f"   transformers n/a ({note})"
    line += f"   fast: {1 / fast:8.1f} tok/s, {1 / fast / ceiling:6.1%} of the {ceiling:.0f} tok/s ceiling"
    print(line, flush=True)


def context_scan(label: str, model, contexts: list[int], steps: int, repeats: int) -> None:
    cells = []
    for context in contexts:
        ids = prompt(model, context)
        step = step_seconds({"fast": (model, archzoo_run(model, ids, steps))}, repeats)["fast"]
        cells.append(f"ctx {context:5d}: {step * 1e3:7.3f} ms")
    print(f"{label:16s} fast per-token decode time   " + "   ".join(cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    repeats, new = (1, 8) if args.quick else (args.repeats, args.new_tokens)
    contexts = [64, 256] if args.quick else [64, 256, 1024]
    small = SMALL
    if args.quick:
        small = transformers.LlamaConfig(**{**SMALL.to_dict(), "num_hidden_layers": 2, "vocab_size": 4096})
    bandwidth = measure_bandwidth(64 if args.quick else 512, repeats=3 if args.quick else 10)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    print(f"memory bandwidth (streaming sum): {bandwidth / 1e9:.1f} GB/s\n")
    with tempfile.TemporaryDirectory() as tmp:
        hf_model, model = pair_from_transformers("LlamaForCausalLM", small, Path(tmp) / "small")
        label = "small-llama" if not args.quick else "small (quick)"
        report(label, hf_model, model, new, repeats, bandwidth)
        context_scan(label, model, contexts, 8 if args.quick else 32, repeats)
        for name in ["bloom-tiny", "llama-tiny"] if args.quick else TINY:
            hf_model, model, note = pair_from_archzoo(name, Path(tmp) / name)
            report(name, hf_model, model, new, repeats, bandwidth, note)
        context_scan("llama-tiny", archzoo.build_model("llama-tiny").eval(), contexts, 8, repeats)
    print(f"\nsupported transformers architectures: {', '.join(ARCHITECTURES)}")


if __name__ == "__main__":
    main()
