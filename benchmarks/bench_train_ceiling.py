"""How fast archzoo's training step could be against transformers' if only the shared kernels cost time.

    python benchmarks/bench_train_ceiling.py [--steps 3] [--rounds 3] [--threads N]

``bench_train.py`` times the two libraries' fp32 steps side by side, ``bench_lora.py`` a LoRA step
against peft. Both sides run the same GEMMs (the same shapes, the same MKL kernels: the same
FLOPs), the same SDPA kernel and the same AdamW. No model code can make those faster; it can only
remove the rest: elementwise ops, copies, casts, the loss's softmax. So the best ratio any
implementation of the same step can reach is

    ceiling = transformers' whole step / archzoo's time in the shared kernels

measured here under ``torch.profiler`` (self CPU time of each kernel, per step; the two sides
profiled in turn, the median of ``--rounds``) for the cases of both benchmarks. The profiler adds
a cost to every op, which lengthens transformers' whole step more than archzoo's few large
kernels, so the ceiling printed is if anything too high: a target above it needs faster kernels
than torch's, not other model code. Also printed: the ratio under the profiler (it slows small
ops most, so it can differ from the timed benchmarks') and the share of archzoo's step that the
shared kernels take.
"""

from __future__ import annotations

import argparse

import torch
import transformers
from torch.profiler import ProfilerActivity, profile

from bench_lora import archzoo_step, lora_pair, peft_step
from bench_train import adamw, archzoo_loss, cases, hf_loss, train_step
from common import cpu_name, same_weights

SHARED_KERNELS = (
    "aten::mm", "aten::addmm", "aten::bmm", "aten::_fused_adamw_",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
)
"""The kernels both steps run on the same shapes: every matmul, SDPA forward and backward, the optimizer."""

TARGETS = {"llama small 512x8, 4x128": 1.3}
"""Issue 15's targets for ``bench_train.py``'s cases; every other one is a tiny config (1.5)."""


def profiled_ms(step, steps: int) -> tuple[float, float]:
    """(whole step, shared kernels), milliseconds per step, self CPU time under ``torch.profiler``."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    shared = sum(event.self_cpu_time_total for event in events if event.key in SHARED_KERNELS)
    return total / steps / 1e3, shared / steps / 1e3


def interleaved_profiles(steps: dict, n_steps: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Each side profiled in turn, ``rounds`` times (a drifting shared machine slows both alike); the
    median round of each side's (whole step, shared kernels)."""
    for step in steps.values():
        step(), step()  # warm-up: allocations, MKL's first calls
    seen = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            seen[name].append(profiled_ms(step, n_steps))
    return {name: sorted(rows)[len(rows) // 2] for name, rows in seen.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="profiled steps per side and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each side in turn; the median round is shown")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{cpu_name(features=True)}, torch {torch.__version__}, transformers {transformers.__version__}, "
          f"threads {torch.get_num_threads()}; ms per step under torch.profiler, median of {args.rounds} "
          f"interleaved rounds of {args.steps} steps\n")
    header = (f"{'fp32 training step':28s} {'transformers':>12s} {'archzoo':>8s} {'ratio':>6s}"
              f" {'archzoo shared':>15s} {'share':>6s} {'ceiling':>8s} {'target':>7s}")
    print(header)
    print("-" * len(header))
    for name, target, steps in ceiling_cases():
        times = interleaved_profiles(steps, args.steps, args.rounds)
        (hf_total, _), (az_total, az_shared) = times["transformers"], times["archzoo"]
        ceiling = hf_total / az_shared
        print(f"{name:28s} {hf_total:9.1f} ms {az_total:5.1f} ms {hf_total / az_total:6.2f} {az_shared:12.1f} ms"
              f" {az_shared / az_total:6.0%} {ceiling:8.2f} {target:7.1f}{'' if ceiling >= target else '  (out of reach)'}",
              flush=True)


def ceiling_cases():
    """(name, issue 15's target, {"transformers": step, "archzoo": step}): ``bench_train.py``'s fp32 cases,
    then ``bench_lora.py``'s LoRA step (peft on transformers against archzoo's fast form)."""
    for name, (batch, seq), hf_model in cases():
        hf_model.train()
        model = same_weights(hf_model).train()
        windows = torch.randint(0, hf_model.config.vocab_size, (batch, seq + 1))
        yield name, TARGETS.get(name, 1.5), {
            "transformers": train_step(hf_loss(hf_model), adamw(hf_model, fused=True), windows),
            "archzoo": train_step(archzoo_loss(model), adamw(model, fused=True), windows),
        }
    _, fast, peft_model, ids = lora_pair()
    trainable = {side: [p for p in m.parameters() if p.requires_grad] for side, m in (("peft", peft_model), ("fast", fast))}
    yield "LoRA small (peft), 4x128", 1.3, {
        "transformers": peft_step(peft_model, torch.optim.AdamW(trainable["peft"], lr=1e-4), ids),
        "archzoo": archzoo_step(fast, torch.optim.AdamW(trainable["fast"], lr=1e-4), ids),
    }

if __name__ == "__main__":
    main()
