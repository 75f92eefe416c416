"""Training-step speed: archzoo and transformers on the same weights, side by side.

    python benchmarks/bench_train.py [--repeats 10] [--threads N] [--clock wall|cpu]

One step = forward, next-token cross-entropy, backward, AdamW step, zero_grad,
in float32, each library computing its loss the way it offers: transformers'
``model(input_ids, labels=...).loss`` (its ``ForCausalLMLoss``: the whole logits, then
``F.cross_entropy``) and archzoo's ``model(ids, targets=...)`` (``blocks/next_token_loss.py``;
its fast form never forms the logits), which ``archzoo.train`` runs. For each case a transformers model with random weights is saved and
loaded into archzoo; each side gets its own AdamW over its own copy of the same
weights, and the steps are timed in turn (a, b, a, b, ...), so a drifting shared
machine slows both alike (median of repeats). archzoo's step is the one
``archzoo.train`` runs (AdamW with ``fused=True``); transformers is timed twice:
with the same fused AdamW (the like-for-like ratio: model code against model
code) and with ``torch.optim.AdamW``'s defaults (what a plain PyTorch loop gets).
Ratios are transformers / archzoo: > 1 means archzoo is faster.
``--clock cpu`` times process CPU seconds instead of wall seconds: on a machine
shared with other jobs, use it with ``--threads 1`` (waiting for a core is then
not counted).
Then archzoo alone: the same small step in fp32 against bf16 autocast
(``archzoo.train``'s ``--precision bf16``), with the CPU's name and whether it
has AMX / AVX-512 BF16, which decide whether bfloat16 matmuls are faster.

Targets (issue 15): the small LLaMA (d_model 512, 8 layers, vocab 32k, batch 4 x 128)
ratio >= 1.3; the tiny configs >= 1.5.

What bounds the ratio: both sides run the same MKL float32 GEMMs on the same shapes
(``bench_train_ceiling.py`` prints, for each case on the CPU at hand, the ratio archzoo would reach
if everything but those GEMMs, SDPA and AdamW were free; on a 2-core Intel Xeon with AMX, 2026-12-03,
four runs: the small step's ceiling 1.18-1.39, the tiny 16 x 128 one 1.45-1.91, so a target of 1.3 or
1.5 asks that nearly all the rest cost nothing). Part of the small step's ratio is page faults, not
arithmetic: glibc hands every allocation over 32 MB (a [4, 128, 32000] float tensor is 65 MB) fresh pages
from mmap, and transformers makes more of them (its logits and their gradients). Run with
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736`` (freed memory kept for reuse), the same
machine, two runs each: transformers 1104 -> 954 and 1194 -> 1007 ms, archzoo 979 -> 923 and
1036 -> 1001 ms, the ratio 1.13 -> 1.03 and 1.15 -> 1.01. Under
``torch.profiler`` (one thread, AMD EPYC Zen 5, with the fused loss) the small-LLaMA step is
transformers 2430 ms of which matmuls 1651, archzoo 1941 of which matmuls 1550 (80%): with
every other op of archzoo's step free, the ratio could reach 2430 / 1550 = 1.57x, and it is
1.25x under the profiler. Most of what archzoo gains is the loss (``fast/next_token_loss.py``:
no [4, 128, 32000] logits, log-softmax or their gradients; +21-26% against the fast path
without it, ``bench_fast_forms.py``). The tiny 16 x 128 step is 60% matmuls on both sides
(67 of 111-113 ms) and its 2048 x 512 logits are below the fused loss's threshold (fused,
it was 67.2 against 67.6 ms: no gain); the 1 x 32 steps are bound by per-op costs.
Measured on this machine's quiet runs (2 threads, median of 10-20, wall clock): small 1.22,
1.09, 1.16; tiny 16 x 128 0.98-1.03; tiny 1 x 32 1.04-1.17 (llama), 1.09-1.17 (qwen3),
1.17-1.35 (bloom). Steps of the small model vary by +-20% from one to the next here.
On a 2-core Intel Xeon with AMX (amx_bf16, avx512_bf16), one run, 2026-12-03: small 1.13
(1.37 against the default AdamW), tiny 16 x 128 1.08, tiny 1 x 32 1.16 (llama), 1.13 (qwen3),
1.31 (bloom); bf16 autocast 1.16x the speed of fp32 (935 against 1085 ms).

Why bf16 gained so little there (``torch.profiler``, same machine, small step): its matmuls took
388 ms against fp32's 861 (2.2x), but two things ate most of that, and each now has a fast form.
(1) SDPA: autocast runs it in bfloat16, and torch's CPU flash-attention backward is about 4x slower
in bfloat16 than in float32 (forward + backward of [4, 8, 128, 64] with a causal mask: 17.8 against
7.9 ms); ``fast/attention.py`` runs it in float32 while training under CPU autocast. (2) The loss:
the fused form ran only outside autocast, so the reference cast the [512, 32000] logits to float32,
ran log-softmax and its backward and filled their gradients (about 170 ms a step with the head's
matmuls and casts); ``fast/next_token_loss.py`` now fuses it under autocast too, with bfloat16
matmuls. With both (2026-12-03, same CPU): bf16 autocast 1.52x the speed of fp32 (682 against
1034 ms; 1.44x in a noisier run); ``bench_fast_forms.py``: the loss +14.8%, attention +3.0-6.4% on the small
bf16 step and +63-70% on llama-tiny 16 x 128.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
import transformers

from common import cpu_name, interleaved_medians, same_weights

SMALL = dict(vocab_size=32000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8)
TINY = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4)


def cases():
    yield "llama small 512x8, 4x128", (4, 128), transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SMALL, intermediate_size=1376, num_key_value_heads=8)
    )
    llama_tiny = transformers.LlamaConfig(**TINY, intermediate_size=352, num_key_value_heads=2)
    yield "llama tiny 128x2, 16x128", (16, 128), transformers.LlamaForCausalLM(llama_tiny)  # archzoo train's default
    yield "llama tiny 128x2, 1x32", (1, 32), transformers.LlamaForCausalLM(llama_tiny)  # per-call overhead
    yield "qwen3 tiny 128x2, 1x32", (1, 32), transformers.Qwen3ForCausalLM(
        transformers.Qwen3Config(**TINY, intermediate_size=352, num_key_value_heads=2, head_dim=48)
    )
    yield "bloom tiny 96x2, 1x32", (1, 32), transformers.BloomForCausalLM(
        transformers.BloomConfig(vocab_size=512, hidden_size=96, n_layer=2, n_head=6)
    )


def hf_loss(model) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """transformers' own training loss: ``labels`` switches it on, ``shift_labels`` says the targets are
    already shifted (so both libraries predict the same batch x seq positions)."""
    return lambda ids, targets: model(input_ids=ids, labels=targets, shift_labels=targets.contiguous()).loss


def archzoo_loss(model) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda ids, targets: model(ids, targets=targets)


def train_step(loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], optimizer, windows: torch.Tensor,
               autocast: bool = False):
    """One optimizer step on ``windows [batch, seq + 1]``; the same code for both libraries."""

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = loss_of(windows[:, :-1], windows[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    return step


def adamw(model: torch.nn.Module, fused: bool | None = None) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95), fused=fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall seconds or process CPU seconds (default: wall)")
    args = parser.parse_args()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"{cpu_name(features=True)}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"threads {torch.get_num_threads()}, {args.clock} clock\n"
    )
    header = (
        f"{'fp32 training step':28s} {'transformers':>13s} {'archzoo':>10s} {'ratio':>6s}"
        f" {'hf, default AdamW':>18s} {'ratio':>6s} {'archzoo tok/s':>14s}"
    )
    print(header)
    print("-" * len(header))
    small = None
    for name, (batch, seq), hf_model in cases():
        hf_model.train()
        model = same_weights(hf_model).train()
        hf_copy = copy.deepcopy(hf_model)
        windows = torch.randint(0, hf_model.config.vocab_size, (batch, seq + 1))
        with torch.no_grad():
            assert (hf_model(input_ids=windows).logits - model(windows)).abs().max() < 1e-4, "not the same weights"
            ids, targets = windows[:, :-1], windows[:, 1:]
            reference = F.cross_entropy(hf_model(input_ids=ids).logits.flatten(0, 1), targets.flatten())
            assert abs(hf_loss(hf_model)(ids, targets) - reference) < 1e-5, "not transformers' next-token loss"
            assert abs(archzoo_loss(model)(ids, targets) - reference) < 1e-4, "not the same loss"
        steps = {
            "transformers": train_step(hf_loss(hf_model), adamw(hf_model, fused=True), windows),
            "archzoo": train_step(archzoo_loss(model), adamw(model, fused=True), windows),
            "transformers default": train_step(hf_loss(hf_copy), adamw(hf_copy), windows),
        }
        times = interleaved_medians(steps, args.repeats, clock=clock)
        t_hf, t_az, t_plain = times["transformers"], times["archzoo"], times["transformers default"]
        print(
            f"{name:28s} {t_hf * 1e3:10.1f} ms {t_az * 1e3:7.1f} ms {t_hf / t_az:6.2f}"
            f" {t_plain * 1e3:15.1f} ms {t_plain / t_az:6.2f} {batch * seq / t_az:14,.0f}",
            flush=True,
        )
        if small is None:
            small = (name, model, windows)
    name, model, windows = small
    optimizer = adamw(model, fused=True)
    times = interleaved_medians(
        {"fp32": train_step(archzoo_loss(model), optimizer, windows),
         "bf16": train_step(archzoo_loss(model), optimizer, windows, autocast=True)},
        args.repeats,
        clock=clock,
    )
    print(f"\narchzoo {name}: fp32 {times['fp32'] * 1e3:.1f} ms, bf16 autocast {times['bf16'] * 1e3:.1f} ms per step "
          f"(bf16 is {times['fp32'] / times['bf16']:.2f}x the speed of fp32)")


if __name__ == "__main__":
    main()
