"""Batch-1 decode speed of weight-only int8 / int4 against fp32 and bf16, one run side by side.

    python benchmarks/bench_quant.py              # the small config (d_model 512, 8 layers, vocab 32k)
    python benchmarks/bench_quant.py --quick      # a few seconds: checks the script runs

Every variant decodes from the same float weights (random: speed does not
depend on the values). A decode step is one single-token forward with the KV
cache (greedy next token, the loop's own argmax included); the figure is the
median step over interleaved rounds: each round runs every variant once, so
drift of a shared machine hits all of them alike. Variants:

    fp32, bf16                       the float model (archzoo's column-major weights)
    int8 / int4 (+ activation dtype) archzoo.quantize, default recipe (output head left float)
    ... head                         skip=(): the 32000 x 512 head quantized too (37% of the weights here)
    ... reference                    the dequantize-and-matmul path (blocks/quant.py), for contrast
    ... kernel forced                the packed kernel even where the timing probe chose
                                     dequantize (float32 activations), for contrast
    torchao int8 weight-only         the peer, if ``pip install torchao`` worked

The "path" column names the kernel each variant's quantized layers ran
(``fast/quant.py``'s ``kernel_path``). Targets (issue 16): int8 >= 1.5x fp32,
int4 >= 2x fp32 on an AVX-512 CPU.

Measured on a heavily loaded 2-core AMD EPYC Zen 5 (AVX-512, ~6 other jobs; fp32 ran ~7x
slower than on the quiet machine), torch 2.13, median ms per token over 5 x 32 steps:
fp32 109.0, bf16 123.5, int8 (bf16 act) 69.8 (1.56x fp32), int4 (bf16 act) 53.5 (2.04x),
int4 head (bf16 act) 37.5 (2.91x); with fp32 activations the kernels (int8 161.5, int4 309.6)
beat dequantize-and-matmul (176.0, 423.9) in that run and the timing probe chose them, where a
quiet run last session found the reverse (16.98 vs 11.98 ms): hence the probe, not a table.
torchao 0.18 int8 weight-only (bf16 act) 175.8. Loaded-machine figures: relative, and noisy.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import archzoo
from archzoo.blocks.quant import QuantLinear
from archzoo.fast.quant import FastQuantLinear, kernel_is_faster, kernel_path
from common import cpu_name

SMALL = {"vocab_size": 32000, "d_model": 512, "n_layers": 8, "n_heads": 8, "hidden": 1536}


def small_config(quick: bool) -> archzoo.Config:
    base = archzoo.load_config("llama-tiny").to_dict()
    base["name"] = "llama-small"
    base["model"].update(vocab_size=SMALL["vocab_size"], d_model=SMALL["d_model"], n_layers=2 if quick else SMALL["n_layers"])
    base["attention"].update(n_heads=SMALL["n_heads"], n_kv_heads=SMALL["n_heads"])
    base["attention"].pop("head_dim", None)
    base["mlp"].update(hidden=SMALL["hidden"])
    return archzoo.Config.from_dict(base)


def variants(model: archzoo.CausalLM, quick: bool) -> dict[str, tuple[torch.nn.Module, torch.dtype]]:
    out = {"fp32": (model, torch.float32), "bf16": (copy.deepcopy(model).to(torch.bfloat16), torch.bfloat16)}
    for mode in ("int8", "int4"):
        for dtype, tag in ((torch.float32, "fp32 act"), (torch.bfloat16, "bf16 act")):
            base = model if dtype == torch.float32 else out["bf16"][0]
            out[f"{mode} ({tag})"] = (archzoo.quantize(copy.deepcopy(base), mode, 128), dtype)
            out[f"{mode} head ({tag})"] = (archzoo.quantize(copy.deepcopy(base), mode, 128, skip=()), dtype)
        if not quick:
            out[f"{mode} reference (fp32 act)"] = (
                archzoo.quantize(copy.deepcopy(model), mode, 128, implementation="reference"), torch.float32)
        forced = archzoo.quantize(copy.deepcopy(model), mode, 128)
        for layer in forced.modules():
            if isinstance(layer, FastQuantLinear):
                layer.forward = layer.kernel_forward  # whatever the timing probe chose
        forced.forced_kernel = f"{mode}pack_mm (forced)"
        out[f"{mode} kernel forced (fp32 act)"] = (forced, torch.float32)
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        peer = copy.deepcopy(out["bf16"][0])
        quantize_(peer, Int8WeightOnlyConfig())
        out["torchao int8 weight-only (bf16 act)"] = (peer, torch.bfloat16)
    except Exception as err:  # not installed, or its API moved: the table says so
        print(f"torchao: not measured ({type(err).__name__}: {str(err)[:80]})")
    return out


def path_of(model: torch.nn.Module, dtype: torch.dtype) -> str:
    if getattr(model, "forced_kernel", None):
        return model.forced_kernel
    paths = sorted({kernel_path(m, dtype) if hasattr(m, "kernel_forward") else "dequantize"
                    for m in model.modules() if isinstance(m, QuantLinear)})
    return "+".join(paths) if paths else "float"


@torch.inference_mode()
def decode_steps(model: torch.nn.Module, prompt: torch.Tensor, steps: int) -> list[float]:
    cache = model.new_cache(prompt.shape[1] + steps + 1)
    token = model(prompt, cache=cache)[:, -1:].argmax(-1)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        token = model(token, cache=cache)[:, -1:].argmax(-1)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers, few steps: checks the script runs")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--steps", type=int, default=32, help="decode steps per round and variant (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds, steps = (1, 4) if args.quick else (args.rounds, args.steps)
    torch.manual_seed(0)
    model = archzoo.build_model(small_config(args.quick)).eval()
    runs = variants(model, args.quick)
    prompt = torch.randint(0, SMALL["vocab_size"], (1, 16))
    times: dict[str, list[float]] = {name: [] for name in runs}
    for m, _ in runs.values():
        decode_steps(m, prompt, 2)  # warm-up: kernels probed, int4 repacked
    for r in range(rounds):
        for name, (m, _) in runs.items():
            times[name] += decode_steps(m, prompt, steps)
        print(f"round {r + 1}/{rounds} done", flush=True)
    fp32 = statistics.median(times["fp32"])
    print(f"\nbatch-1 decode, {small_config(args.quick).name} (d_model 512, {model.config.model.n_layers} layers, "
          f"vocab 32k), {args.threads} threads, torch {torch.__version__}, CPU: {cpu_name()}")
    print(f"{'variant':40} {'ms/token':>9} {'tokens/s':>9} {'x fp32':>7}  path")
    for name, (m, dtype) in runs.items():
        step = statistics.median(times[name])
        print(f"{name:40} {step * 1e3:9.2f} {1 / step:9.1f} {fp32 / step:7.2f}  {path_of(m, dtype)}")
    probes = ", ".join(f"{mode} {str(dtype).removeprefix('torch.')} {'kernel' if kernel_is_faster(mode, dtype) else 'dequantize'}"
                       for mode in ("int8", "int4") for dtype in (torch.float32, torch.bfloat16))
    print(f"timing probe (fast/quant.py kernel_is_faster) chose: {probes}")


if __name__ == "__main__":
    main()
