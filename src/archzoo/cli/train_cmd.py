"""Train a config from scratch on the bytes of a text file (a laptop-CPU demo).

Without --text it trains on archzoo's own source code. The vocabulary must
cover bytes (vocab_size >= 256); ids are UTF-8 bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..config import load_config
from ..models.decoder import build_model
from ..train import TrainStep, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="config name or path to a .toml file (tiny configs train in seconds)")
    parser.add_argument("--text", type=Path, help="a text file to train on (default: archzoo's own source)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--save", type=Path, help="write the trained model as a Hugging Face folder")


def default_corpus() -> bytes:
    root = Path(__file__).resolve().parent.parent
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*.py")))


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.name)
    if cfg.model.vocab_size < 256:
        raise SystemExit(f"archzoo train: {cfg.name} has vocab_size {cfg.model.vocab_size} < 256; byte-level training needs >= 256")
    for flag in ("steps", "batch", "seq_len"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"archzoo train: --{flag.replace('_', '-')} must be >= 1")
    data = args.text.read_bytes() if args.text else default_corpus()
    tokens = torch.tensor(list(data), dtype=torch.long)
    torch.manual_seed(args.seed)
    model = build_model(cfg)
    print(f"{cfg.name}: training on {len(data):,} bytes for {args.steps} steps (batch {args.batch} x {args.seq_len})")

    def log(step: TrainStep) -> None:
        if step.step % args.log_every == 0 or step.step == args.steps - 1:
            print(f"  step {step.step:5d}  loss {step.loss:.4f}  lr {step.lr:.2e}")

    losses = train(model, tokens, steps=args.steps, batch=args.batch, seq_len=args.seq_len, lr=args.lr, seed=args.seed, on_step=log)
    print(f"loss {losses[0]:.4f} -> {losses[-1]:.4f} (uniform guess: ln {cfg.model.vocab_size} = {torch.log(torch.tensor(float(cfg.model.vocab_size))):.4f})")
    if args.save:
        from ..models.hf import save_pretrained

        save_pretrained(model, args.save)
        print(f"saved to {args.save}")
    return 0
