"""Decode tokens from a model (a config with random weights, or a checkpoint folder) and time it.

archzoo generate llama-tiny --prompt-ids 1,2,3 --max-new-tokens 20
archzoo generate llama-tiny --prompt "Hello"        (vocabularies of >= 256 tokens: UTF-8 bytes as ids)
archzoo generate path/to/hf-folder --prompt-ids 1,2,3

Prints the new token ids and the decode speed (prefill timed apart).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ..config import load_config
from ..generate import DECODE_SCHEMES, generate
from ..models.decoder import build_model
from ..models.hf import load_pretrained

BYTE_VOCAB = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="NAME_OR_FOLDER", help="config name / .toml path, or a checkpoint folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt-ids", help="comma-separated token ids, e.g. 1,2,3")
    source.add_argument("--prompt", help="text, fed as UTF-8 bytes (needs a vocabulary of >= 256 tokens)")
    parser.add_argument("--max-new-tokens", type=int, default=20, help="tokens to generate (default 20)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    parser.add_argument("--top-p", type=float, default=None, help="sample within the top-p probability mass")
    parser.add_argument("--eos-id", type=int, default=None, help="stop at this token (default: the config's eos_id)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random init and of sampling")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def load_model(name_or_folder: str, seed: int) -> tuple[torch.nn.Module, str]:
    """A checkpoint folder through ``load_pretrained``; otherwise a config with seeded random weights."""
    if Path(name_or_folder).is_dir():
        return load_pretrained(name_or_folder), f"checkpoint {name_or_folder}"
    cfg = load_config(name_or_folder)
    torch.manual_seed(seed)
    return build_model(cfg), f"{cfg.name} (random weights, seed {seed})"


def prompt_ids(args: argparse.Namespace, model: torch.nn.Module) -> list[int]:
    """The prompt as token ids, checked against the vocabulary."""
    vocab = model.config.model.vocab_size
    if args.prompt is not None:
        if vocab < BYTE_VOCAB:
            raise ValueError(
                f"--prompt: {model.config.name} has a vocabulary of {vocab} tokens, too small for UTF-8 bytes "
                f"(needs >= {BYTE_VOCAB}); pass --prompt-ids instead"
            )
        ids = list(args.prompt.encode("utf-8"))
    else:
        try:
            ids = [int(part) for part in args.prompt_ids.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--prompt-ids: expected comma-separated integers, got {args.prompt_ids!r}") from None
    if not ids:
        raise ValueError("the prompt is empty")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        raise ValueError(f"--prompt-ids: ids {bad} are outside the vocabulary [0, {vocab})")
    return DECODE_SCHEMES[model.config.position.kind].complete_prompt(ids, model.config)


def timed_generate(model, ids: torch.Tensor, max_new_tokens: int, **kwargs) -> tuple[torch.Tensor, float, float]:
    """(new ids, prefill seconds, seconds for all the decode steps after it)."""
    generate(model, ids, min(2, max_new_tokens), **kwargs)  # warm-up: first-call allocations
    start = time.perf_counter()
    generate(model, ids, 1, **kwargs)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    new = generate(model, ids, max_new_tokens, **kwargs)
    total = time.perf_counter() - start
    return new, prefill, max(total - prefill, 0.0)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ValueError as err:
        print(f"archzoo generate: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens: must be >= 1, got {args.max_new_tokens}")
    model, described = load_model(args.model, args.seed)
    model.eval()
    ids = prompt_ids(args, model)
    eos_id = args.eos_id if args.eos_id is not None else model.config.tokens.eos_id
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "eos_id": eos_id}
    if args.temperature > 0:
        sampling["generator"] = torch.Generator().manual_seed(args.seed)
    new, prefill_s, decode_s = timed_generate(model, torch.tensor([ids]), args.max_new_tokens, **sampling)
    new_ids = new[0].tolist()
    steps = len(new_ids) - 1  # the first new token comes out of the prefill
    report = {
        "model": described,
        "prompt_ids": ids,
        "new_ids": new_ids,
        "prefill_ms": prefill_s * 1e3,
        "decode_steps": steps,
        "decode_tokens_per_s": steps / decode_s if steps and decode_s > 0 else None,
        "decode_ms_per_token": decode_s * 1e3 / steps if steps else None,
    }
    if args.prompt is not None:
        report["text"] = bytes(i for i in new_ids if i < BYTE_VOCAB).decode("utf-8", errors="replace")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"model:   {described}")
    print(f"prompt:  {len(ids)} tokens {ids}")
    print(f"new:     {len(new_ids)} tokens {new_ids}")
    if "text" in report:
        print(f"text:    {report['text']!r}  (ids >= {BYTE_VOCAB} are not bytes and are left out)")
    print(f"prefill: {len(ids)} tokens in {report['prefill_ms']:.2f} ms")
    if steps:
        print(
            f"decode:  {steps} steps in {decode_s * 1e3:.2f} ms: "
            f"{report['decode_tokens_per_s']:.1f} tokens/s, {report['decode_ms_per_token']:.3f} ms/token"
        )
    return 0
