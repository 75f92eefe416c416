"""Exact parameter counts, memory, KV cache and FLOPs of a config (nothing is allocated).

Bytes are decimal (1 GB = 10^9 bytes), as the "2 bytes per parameter" rules of thumb use them.
"""

from __future__ import annotations

import argparse
import json

from ..config import Config
from ..inspect import BYTES_PER_VALUE, COMPONENTS, MemoryReport, ParamReport, count_params, estimate_memory
from ..models.hf.config_json import CONFIG_ARGUMENT_HELP, load_any_config, quantization_recipe
from .argtypes import dtype_name, positive_int
from .table import format_table, human

COMPONENT_LABELS = {
    "embeddings": "embeddings",
    "attention": "attention",
    "mlp": "mlp (dense)",
    "routed_experts": "routed experts",
    "shared_experts": "shared experts",
    "router": "router",
    "norms": "norms",
    "lm_head": "lm_head",
}


def add_memory_arguments(parser: argparse.ArgumentParser, seq_default: str) -> None:
    parser.add_argument("--seq-len", type=positive_int, default=None, help=f"tokens per sequence (default: {seq_default})")
    parser.add_argument("--batch", type=positive_int, default=1, help="sequences at once (default: 1)")
    parser.add_argument(
        "--dtype",
        type=dtype_name,
        default="bf16",
        choices=list(BYTES_PER_VALUE),
        help="inference weights and KV cache (default: bf16; bfloat16, float16, float32 accepted too)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=CONFIG_ARGUMENT_HELP)
    add_memory_arguments(parser, "the config's max_seq_len")


def run(args: argparse.Namespace) -> int:
    cfg = load_any_config(args.name)
    report = count_params(cfg)
    recipe = quantization_recipe(args.name) or {}  # a quantized checkpoint's int4 figure is its own layout's
    group = recipe.get("group_size", 128) if recipe.get("mode") == "int4" else 128
    memory = estimate_memory(cfg, batch=args.batch, seq_len=args.seq_len, dtype=args.dtype, params=report,
                             group_size=group, symmetric=bool(recipe.get("symmetric")))
    if args.json:
        print(json.dumps({**report.to_dict(), "memory": memory.to_dict()}, indent=2))
        return 0
    print(f"{cfg.name}  ({cfg.family}; {cfg.blocks_summary()})")
    if cfg.description:
        print(cfg.description)
    if cfg.source:
        print(f"source: {cfg.source}")
    print()
    print(params_table(report))
    for line in params_notes(cfg, report):
        print(line)
    print()
    print(memory_table(memory))
    print()
    print(flops_table(memory))
    return 0


def params_table(report: ParamReport) -> str:
    """Per-component rows, total, embedding split; an active column for MoE."""
    moe = report.is_moe
    rows = []
    for part in COMPONENTS:
        n = report.components[part]
        if n == 0 and part in ("mlp", "routed_experts", "shared_experts", "router"):
            continue
        row = [COMPONENT_LABELS[part], n, human(n)]
        if moe:
            a = report.active_components[part]
            row += [a, human(a)]
        rows.append(row)
    rows.append(["total", report.total, human(report.total)] + ([report.active, human(report.active)] if moe else []))
    rows.append(["  embedding", report.embedding, human(report.embedding)] + (["", ""] if moe else []))
    rows.append(["  non-embedding", report.non_embedding, human(report.non_embedding)] + (["", ""] if moe else []))
    headers = ["parameters", "total", ""] + (["active per token", ""] if moe else [])
    return format_table(headers, rows, align="lrr" + ("rr" if moe else ""))


def params_notes(cfg: Config, report: ParamReport) -> list[str]:
    notes = []
    if report.tied_embeddings:
        notes.append("lm_head is tied to the input embedding: one matrix, counted once (under embeddings)")
    if report.is_moe:
        m = cfg.moe
        notes.append(f"active = total minus the {m.n_experts - m.top_k} of {m.n_experts} routed experts a token skips")
    for name, n in report.buffers.items():
        notes.append(f"buffer (stored, not learned, not in total): {name}  {n:,}")
    if report.mtp:
        notes.append(
            f"multi-token prediction: {cfg.model.mtp_layers} module(s), {report.mtp:,} ({human(report.mtp)}) "
            "parameters, not in total; they share the main model's embedding and head "
            f"({human(report.mtp + report.embedding)} with a copy of both, as the released checkpoint stores them)"
        )
    return notes


def human_bytes(n: float) -> str:
    """Decimal units: 1.5e9 -> '1.50 GB'."""
    for threshold, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if abs(n) >= threshold:
            return f"{n / threshold:.2f} {unit}"
    return f"{n:g} B"


def memory_table(m: MemoryReport) -> str:
    b = human_bytes
    kv_line = f"{m.kv_values_per_token_per_layer:,} values/layer"
    rows = [["weights " + name, b(n), ""] for name, n in m.weight_bytes.items()]
    rows += [
        [f"KV cache per token ({m.dtype})", b(m.kv_bytes_per_token), kv_line],
        [f"KV cache {m.batch} x {m.seq_len} tokens", b(m.kv_cache_bytes), ""],
        [f"inference total ({m.dtype})", b(m.inference_bytes), "weights + KV cache"],
    ]
    rows += [[f"training: {part}", b(n), ""] for part, n in m.training_state_bytes.items()]
    rows += [
        ["training: activations", b(m.activation_bytes), "16-bit, no checkpointing"],
        ["training: activations, checkpointed", b(m.activation_bytes_checkpointed), "full recomputation"],
        ["training total (AdamW, mixed precision)", b(m.training_bytes), ""],
        ["training total, checkpointed", b(m.training_bytes_checkpointed), ""],
    ]
    title = f"memory (batch {m.batch}, {m.seq_len} tokens)"
    return format_table([title, "bytes", ""], rows, align="lrl")


def flops_table(m: MemoryReport) -> str:
    f = m.flops
    rows = [
        ["2 x matmul params", f.dense_per_token, human(f.dense_per_token)],
        [f"attention at {f.seq_len} tokens", f.attention_per_token, human(f.attention_per_token)],
        ["forward", f.forward_per_token, human(f.forward_per_token)],
        ["training step (3 x forward)", f.training_per_token, human(f.training_per_token)],
        ["training, recomputed (4 x forward)", f.training_recompute_per_token, human(f.training_recompute_per_token)],
    ]
    return format_table(["FLOPs per token", "FLOPs", ""], rows, align="lrr")
