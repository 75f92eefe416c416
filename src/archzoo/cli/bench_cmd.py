"""Time a config's prefill and cached decoding on this machine (random weights).

For side-by-side comparisons with transformers see ``benchmarks/``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ..config import load_config
from ..models.decoder import build_model

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="config name or path to a .toml file")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=128, help="prompt length for prefill")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens decoded one by one after the prompt")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    for flag in ("batch", "seq_len", "repeats"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"archzoo bench: --{flag.replace('_', '-')} must be >= 1")
    cfg = load_config(args.name)
    torch.manual_seed(0)
    model = build_model(cfg, dtype=DTYPES[args.dtype]).eval()
    ids = torch.randint(0, cfg.model.vocab_size, (args.batch, args.seq_len))

    prefill = []
    decode = []
    with torch.inference_mode():
        for _ in range(args.repeats + 1):
            cache = model.new_cache(args.seq_len + args.new_tokens)
            start = time.perf_counter()
            logits = model(ids, cache=cache, logits_to_keep=1)
            prefill.append(time.perf_counter() - start)
            token = logits[:, -1].argmax(-1, keepdim=True)
            start = time.perf_counter()
            for _ in range(args.new_tokens):
                token = model(token, cache=cache, logits_to_keep=1)[:, -1].argmax(-1, keepdim=True)
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
    print(f"{cfg.name} ({args.dtype}, {result['threads']} threads), batch {args.batch}")
    print(f"  prefill {args.seq_len} tokens: {result['prefill_ms']:.2f} ms ({result['prefill_tokens_per_s']:,.0f} tokens/s)")
    if args.new_tokens:
        print(f"  decode: {result['decode_ms_per_token']:.2f} ms/token ({result['decode_tokens_per_s']:,.1f} tokens/s)")
    return 0
