"""Shared pieces of the benchmark scripts: timing, the machine's matmul peak,
and building archzoo and transformers models that hold the same weights."""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import torch

import archzoo


def cpu_name(features: bool = False) -> str:
    """The CPU's model name from /proc/cpuinfo (benchmarks report speed with it); with ``features``,
    which of AMX-bf16, AVX-512-bf16 and AVX-512 it has (what decides bf16 and fp32 matmul speed)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            info = f.read()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU")
    if not features:
        return name
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    found = [f for f in ("amx_bf16", "avx512_bf16", "avx512f") if f in flags]
    return f"{name} ({', '.join(found) or 'no AVX-512 / AMX'})"


def median_seconds(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int = 10, warmup: int = 2,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median time of each function by ``clock`` (wall time unless told, e.g. ``time.process_time``),
    timing them in turn (a, b, a, b, ...), so that a machine whose speed drifts (a shared VM) slows
    both sides alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def matmul_peak_flops(sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 5) -> float:
    """This machine's float32 matmul throughput (FLOP/s, all threads): the best
    over a few square sizes of the fastest of ``repeats`` runs, so that it is a
    peak, not a typical, figure."""
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        a @ b  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        best = max(best, 2 * size**3 / min(times))
    return best


def same_weights(hf_model, implementation: str = "fast") -> archzoo.CausalLM:
    """The archzoo model holding ``hf_model``'s weights, through a checkpoint folder."""
    with tempfile.TemporaryDirectory() as folder:
        hf_model.save_pretrained(folder)
        return archzoo.load_pretrained(folder, implementation=implementation).eval()


def forward_flops(model: archzoo.CausalLM, batch: int, seq: int) -> float:
    """Matmul FLOPs of one forward over batch x seq tokens: 2 x (weights touched per
    token, the embedding lookup excluded) per token, plus QK^T and AV over the
    causal half of the score matrix (2 x 2 x layers x heads x head_dim x seq^2 / 2 per row)."""
    cfg = model.config
    weights = sum(p.numel() for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed."))
    if cfg.model.tie_embeddings:
        weights += model.embed.weight.numel()
    attention = 2 * cfg.model.n_layers * cfg.n_heads * cfg.head_dim * seq * seq  # causal half of 2 x 2 x ...
    return batch * (2 * weights * seq + attention)
