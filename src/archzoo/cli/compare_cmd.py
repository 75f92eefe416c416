"""Compare configs side by side, or blocks alone at one size.

    archzoo compare llama2-70b qwen2.5-72b deepseek-v3 [--seq-len 4096 --batch 1 --dtype bf16]
    archzoo compare --blocks attention:mha,gqa,mqa,mla --d-model 4096 --n-heads 32
    archzoo compare --blocks mlp:gelu,swiglu,geglu --iso-params
    archzoo compare --blocks norm:layernorm,rmsnorm
    archzoo compare --blocks position:rope,alibi

Blocks are built from their own constructors, run on the same random input
[batch, seq-len, d-model] in float32 on the CPU (one warm-up call, then the
median of --repeats timed calls). KV values per token are read off the cache
each attention block fills. See ``archzoo.inspect.blocks`` for the formulas.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from ..inspect import count_params, dtype_bytes, estimate_memory
from ..inspect.blocks import BLOCK_KINDS, BlockSize, build_block, measure_block
from ..memory_guard import require_memory
from ..models.hf.config_json import load_any_config
from .argtypes import non_negative_int, positive_int
from .params_cmd import add_memory_arguments, human_bytes
from .table import format_table, human

CONFIG_SEQ_LEN = 4096
BLOCK_SEQ_LEN = 32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", help="configs side by side: names, .toml files, config.json files or checkpoint folders")
    add_memory_arguments(parser, f"{CONFIG_SEQ_LEN} for configs, {BLOCK_SEQ_LEN} for --blocks")
    blocks = parser.add_argument_group("blocks alone")
    kinds = "; ".join(f"{kind}: {','.join(variants)}" for kind, variants in BLOCK_KINDS.items())
    blocks.add_argument("--blocks", metavar="KIND:A,B,...", help=f"compare variants of one block kind ({kinds})")
    blocks.add_argument("--d-model", type=positive_int, default=4096, help="model width (default: 4096)")
    blocks.add_argument("--n-heads", type=positive_int, default=32, help="query heads (default: 32)")
    blocks.add_argument("--n-kv-heads", type=positive_int, help="kv heads of gqa (default: n_heads / 4)")
    blocks.add_argument("--head-dim", type=positive_int, help="head width (default: d_model / n_heads)")
    blocks.add_argument("--hidden", type=positive_int, help="plain MLP inner width (default: 4 d_model)")
    blocks.add_argument("--iso-params", action="store_true", help="gated MLPs get 2/3 of --hidden: equal parameters")
    blocks.add_argument("--kv-lora-rank", type=positive_int, help="mla latent width (default: 4 head_dim)")
    blocks.add_argument("--q-lora-rank", type=non_negative_int, help="mla query rank (default: 3 kv_lora_rank; 0 = none)")
    blocks.add_argument("--repeats", type=positive_int, default=3, help="timed calls per block (default: 3)")
    blocks.add_argument("--force", action="store_true", help="run even if the memory it needs looks larger than the memory available (default: refuse)")


def run(args: argparse.Namespace) -> int:
    try:
        if args.blocks:
            if args.names:
                raise ValueError("give config names or --blocks, not both")
            return run_blocks(args)
        if not args.names:
            raise ValueError("give one or more config names, or --blocks KIND:A,B")
        return run_configs(args)
    except ValueError as err:
        print(f"archzoo compare: {err}", file=sys.stderr)
        return 2


# ---- configs side by side ------------------------------------------------------
def config_column(name: str, seq_len: int, batch: int, dtype: str) -> dict:
    cfg = load_any_config(name)
    params = count_params(cfg)
    memory = estimate_memory(cfg, batch=batch, seq_len=seq_len, dtype=dtype, params=params)
    return {
        "name": cfg.name,
        "family": cfg.family,
        "blocks": cfg.blocks_summary(),
        "layers": cfg.model.n_layers,
        "d_model": cfg.model.d_model,
        "heads": cfg.n_heads,
        "kv_heads": cfg.attention.cached_heads(cfg.n_kv_heads),
        "head_dim": cfg.qk_head_dim,
        "mlp_hidden": cfg.mlp_hidden,
        "experts": f"{cfg.moe.top_k}/{cfg.moe.n_experts} x {cfg.moe.expert_hidden}" if cfg.moe else None,
        "vocab": cfg.model.vocab_size,
        "tied": cfg.model.tie_embeddings,
        "total": params.total,
        "active": params.active,
        "embedding": params.embedding,
        "non_embedding": params.non_embedding,
        "mtp": params.mtp,
        "weights_bytes": params.total * dtype_bytes(dtype),
        "params": params.to_dict(),
        "memory": memory.to_dict(),
    }


def run_configs(args: argparse.Namespace) -> int:
    seq_len = args.seq_len or CONFIG_SEQ_LEN
    columns = [config_column(name, seq_len, args.batch, args.dtype) for name in args.names]
    if args.json:
        print(json.dumps(columns, indent=2))
        return 0
    dtype = args.dtype
    fields = [
        ("family", lambda c: c["family"]),
        ("layers", lambda c: c["layers"]),
        ("d_model", lambda c: c["d_model"]),
        ("heads / kv heads", lambda c: f"{c['heads']} / {c['kv_heads'] if c['kv_heads'] else 'latent'}"),
        ("head dim (q.k)", lambda c: c["head_dim"]),
        ("dense MLP hidden", lambda c: c["mlp_hidden"]),
        ("experts (top-k/n x hidden)", lambda c: c["experts"] or "-"),
        ("vocab", lambda c: c["vocab"]),
        ("tied head", lambda c: c["tied"]),
        ("params total", lambda c: human(c["total"])),
        ("params active", lambda c: human(c["active"])),
        ("embedding / non-emb.", lambda c: f"{human(c['embedding'])} / {human(c['non_embedding'])}"),
        ("MTP (apart)", lambda c: human(c["mtp"]) if c["mtp"] else "-"),
        (f"weights {dtype}", lambda c: human_bytes(c["weights_bytes"])),
        (f"KV / token ({dtype})", lambda c: human_bytes(c["memory"]["kv_bytes_per_token"])),
        (f"KV {args.batch} x {seq_len}", lambda c: human_bytes(c["memory"]["kv_cache_bytes"])),
        ("inference total", lambda c: human_bytes(c["memory"]["inference_bytes"])),
        ("training (AdamW)", lambda c: human_bytes(c["memory"]["training_bytes"])),
        ("training, checkpointed", lambda c: human_bytes(c["memory"]["training_bytes_checkpointed"])),
        ("forward FLOPs/token", lambda c: human(c["memory"]["flops"]["forward_per_token"])),
    ]
    rows = [[label] + [get(c) for c in columns] for label, get in fields]
    for c in columns:
        print(f"{c['name']}: {c['blocks']}")
    print()
    print(format_table([""] + [c["name"] for c in columns], rows, align="l" + "r" * len(columns)))
    return 0


# ---- blocks alone ------------------------------------------------------------------
def parse_blocks(spec: str) -> tuple[str, list[str]]:
    """``attention:mha,gqa`` -> ("attention", ["mha", "gqa"]); errors name --blocks and the choices."""
    kind, sep, names = spec.partition(":")
    if not sep or not names:
        raise ValueError(f"--blocks must be KIND:A,B,... (e.g. attention:mha,gqa), got {spec!r}")
    if kind not in BLOCK_KINDS:
        raise ValueError(f"--blocks kind {kind!r} unknown; choose from {', '.join(BLOCK_KINDS)}")
    variants = [v.strip() for v in names.split(",") if v.strip()]
    if not variants:
        raise ValueError(f"--blocks {kind}: names no variant; choose from {', '.join(BLOCK_KINDS[kind])}")
    unknown = [v for v in variants if v not in BLOCK_KINDS[kind]]
    if unknown:
        raise ValueError(f"--blocks {kind} has no {', '.join(unknown)}; choose from {', '.join(BLOCK_KINDS[kind])}")
    return kind, variants


def block_size(args: argparse.Namespace, kind: str) -> BlockSize:
    checks = {"--d-model": args.d_model, "--n-heads": args.n_heads, "--batch": args.batch, "--repeats": args.repeats}
    checks.update({"--seq-len": args.seq_len} if args.seq_len is not None else {})
    for flag, value in checks.items():
        if value <= 0:
            raise ValueError(f"{flag} must be > 0, got {value}")
    heads_matter = kind in ("attention", "position")
    if heads_matter and args.head_dim is None and args.d_model % args.n_heads:
        raise ValueError(f"--n-heads ({args.n_heads}) must divide --d-model ({args.d_model})")
    kv = args.n_kv_heads
    if kv is not None and (kv <= 0 or args.n_heads % kv):
        raise ValueError(f"--n-kv-heads ({kv}) must divide --n-heads ({args.n_heads})")
    size = BlockSize(
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_kv_heads=kv,
        head_dim=args.head_dim,
        hidden=args.hidden,
        iso_params=args.iso_params,
        kv_lora_rank=args.kv_lora_rank,
        q_lora_rank=args.q_lora_rank,
        seq_len=args.seq_len or BLOCK_SEQ_LEN,
        batch=args.batch,
        dtype=args.dtype,
    )
    if heads_matter and args.n_heads % size.gqa_kv_heads:
        raise ValueError(f"gqa kv heads ({size.gqa_kv_heads}) must divide --n-heads; set --n-kv-heads")
    return size


def require_block_memory(kind: str, variants: list[str], size: BlockSize, *, force: bool) -> None:
    """The largest variant's float32 weights (built on meta, so nothing is allocated) plus its working set:
    about 8 [batch, seq, max(d_model, hidden)] activations and, for attention, the [batch, heads, seq, seq] scores."""
    if force:
        return
    with torch.device("meta"):
        weights = max(sum(p.numel() for p in build_block(kind, v, size).module.parameters()) for v in variants)
    width = max(size.d_model, size.plain_hidden)
    scores = size.batch * size.n_heads * size.seq_len**2 if kind in ("attention", "position") else 0
    need = 4 * (weights + 8 * size.batch * size.seq_len * width + 2 * scores)
    require_memory(need, f"--blocks {kind} at d_model {size.d_model}", force=force)


def run_blocks(args: argparse.Namespace) -> int:
    kind, variants = parse_blocks(args.blocks)
    size = block_size(args, kind)
    require_block_memory(kind, variants, size, force=args.force)
    reports = [measure_block(kind, variant, size, repeats=args.repeats) for variant in variants]
    if args.json:
        print(json.dumps({"size": size.__dict__, "blocks": [r.to_dict() for r in reports]}, indent=2))
        return 0
    heads = f", {size.n_heads} heads of {size.hd}" if kind in ("attention", "position") else ""
    print(
        f"{kind} blocks at d_model {size.d_model}{heads}; input [{size.batch}, {size.seq_len}, "
        f"{size.d_model}] float32 on CPU; median of {args.repeats} calls"
    )
    has_kv = any(r.kv_values_per_token is not None for r in reports)
    headers = ["block", "params", "FLOPs/token"]
    headers += ["KV values/token/layer", f"KV bytes/token ({size.dtype})"] if has_kv else []
    headers += ["ms/call", "out mean", "out std", "note"]
    rows = []
    for r in reports:
        row = [r.variant, r.params, r.flops_per_token]
        if has_kv:
            row += [r.kv_values_measured, human_bytes(r.kv_bytes_per_token)] if r.kv_values_per_token else ["-", "-"]
        row += [f"{r.seconds_per_call * 1e3:.2f}", f"{r.output_mean:+.2e}", f"{r.output_std:.4f}", r.note]
        rows.append(row)
    align = "lrr" + ("rr" if has_kv else "") + "rrrl"
    print(format_table(headers, rows, align=align))
    return 0
