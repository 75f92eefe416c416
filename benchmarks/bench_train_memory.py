"""Peak memory of one training step, measured, beside estimate_memory's figure.

    python benchmarks/bench_train_memory.py [--batch 4] [--seq-len 128]

The small LLaMA config (d_model 512, 8 layers, vocab 32k) trains one step to create
AdamW's state, then a second step is measured: the peak of live tensor bytes
(``archzoo.train.memory.TensorMemory``: every storage that forward, backward and the
optimizer hold at once), against ``estimate_memory(...).training_step.peak`` for the
same precision and checkpointing. LoRA rows appear once ``archzoo.add_lora`` exists.

Target (issue 15): every estimate within 15% of the measurement.
"""

from __future__ import annotations

import argparse

import torch

import archzoo
from archzoo.config import Config
from archzoo.train import Split, Trainer, TrainSettings
from archzoo.train.memory import TensorMemory

MiB = 2**20


def small_llama() -> Config:
    data = archzoo.load_config("llama-tiny").to_dict()
    data["name"] = "llama-small"
    data["model"].update(vocab_size=32000, d_model=512, n_layers=8, max_seq_len=512)
    data["attention"] = {"n_heads": 8, "n_kv_heads": 8}
    data["mlp"] = {"hidden": 1376}
    return Config.from_dict(data)


def measure(cfg: Config, batch: int, seq_len: int, precision: str, checkpointing: bool) -> float:
    torch.manual_seed(0)
    model = archzoo.build_model(cfg)
    ids = torch.randint(0, cfg.model.vocab_size, (batch * (seq_len + 1) * 3,))
    settings = TrainSettings(steps=3, batch=batch, seq_len=seq_len, precision=precision, checkpointing=checkpointing, val_fraction=0.0)
    trainer = Trainer(model, Split(ids, ids[:0]), settings)
    trainer.train_step()
    with TensorMemory().track_training(model, trainer.optimizer) as mem:
        trainer.train_step()
    return mem.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    args = parser.parse_args()
    cfg = small_llama()
    print(f"{cfg.name}: d_model 512, 8 layers, vocab 32000, batch {args.batch} x {args.seq_len}\n")
    print(f"{'step':28s} {'measured MiB':>13s} {'estimate MiB':>13s} {'ratio':>6s}  peak at")
    worst = 0.0
    for precision in ("fp32", "bf16", "bf16-pure"):
        for checkpointing in (False, True):
            measured = measure(cfg, args.batch, args.seq_len, precision, checkpointing)
            est = archzoo.estimate_memory(cfg, batch=args.batch, seq_len=args.seq_len, precision=precision, checkpointing=checkpointing)
            ratio = est.training_step.peak / measured
            worst = max(worst, abs(ratio - 1))
            label = f"full {precision}" + (" + checkpointing" if checkpointing else "")
            print(f"{label:28s} {measured / MiB:13.1f} {est.training_step.peak / MiB:13.1f} {ratio:6.3f}  {est.training_step.peak_at}", flush=True)
    print(f"\nlargest deviation {worst:.1%} (target: within 15%)")


if __name__ == "__main__":
    main()
