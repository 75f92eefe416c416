"""Time a config's prefill and cached decoding on this machine (random weights).

For side-by-side comparisons with transformers see ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from ..config import load_config
from ..models.decoder import build_model
from .argtypes import dtype_name, non_negative_int, positive_int
from .progress import Progress, plural
from .quant_args import add_quantize_arguments, apply_quantize

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's intra-op CPU threads (default: torch's own choice, usually the cores)."""
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads for torch (default: torch's choice, the cores)"
    )


def set_threads(threads: int | None) -> None:
    if threads is not None:
        torch.set_num_threads(threads)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="config name or path to a .toml file")
    parser.add_argument("--batch", type=positive_int, default=1, help="sequences decoded at once")
    parser.add_argument("--seq-len", type=positive_int, default=128, help="prompt length for prefill (tokens)")
    parser.add_argument(
        "--new-tokens", type=non_negative_int, default=32, help="tokens decoded one by one after the prompt (0: prefill only)"
    )
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed runs (after one warm-up run); the median is shown")
    parser.add_argument(
        "--dtype", type=dtype_name, choices=list(DTYPES), default="fp32", help="weights and activations (bfloat16, float16, float32 accepted too)"
    )
    add_threads_argument(parser)
    add_quantize_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    cfg = load_config(args.name)
    print(f"{cfg.name}: building with random weights ({args.dtype}) ...", file=sys.stderr, flush=True)
    torch.manual_seed(0)
    model = apply_quantize(build_model(cfg, dtype=DTYPES[args.dtype]).eval(), args)
    ids = torch.randint(0, cfg.model.vocab_size, (args.batch, args.seq_len))

    prefill = []
    decode = []
    rounds = args.repeats + 1
    with torch.inference_mode(), Progress(rounds * (1 + args.new_tokens), "bench", unit="model calls") as bar:
        for _ in range(rounds):
            cache = model.new_cache(args.seq_len + args.new_tokens)
            start = time.perf_counter()
            logits = model(ids, cache=cache, logits_to_keep=1)
            prefill.append(time.perf_counter() - start)
            bar.update()
            token = logits[:, -1].argmax(-1, keepdim=True)
            start = time.perf_counter()
            for _ in range(args.new_tokens):
                token = model(token, cache=cache, logits_to_keep=1)[:, -1].argmax(-1, keepdim=True)
                bar.update()
            decode.append(time.perf_counter() - start)
    prefill_s = statistics.median(prefill[1:])  # the first run warms up
    decode_s = statistics.median(decode[1:]) / max(args.new_tokens, 1)
    result = {
        "name": cfg.name,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "prefill_ms": prefill_s * 1e3,
        "prefill_tokens_per_s": args.batch * args.seq_len / prefill_s,
        "decode_ms_per_token": decode_s * 1e3,
        "decode_tokens_per_s": args.batch / decode_s if args.new_tokens else None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{cfg.name} ({args.dtype}, {plural(result['threads'], 'thread')}), batch {args.batch}")
    print(f"  prefill {args.seq_len} tokens: {result['prefill_ms']:.2f} ms ({result['prefill_tokens_per_s']:,.0f} tokens/s)")
    if args.new_tokens:
        print(f"  decode: {result['decode_ms_per_token']:.2f} ms/token ({result['decode_tokens_per_s']:,.1f} tokens/s)")
    return 0
