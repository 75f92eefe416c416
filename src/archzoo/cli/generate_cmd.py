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
from .argtypes import non_negative_float, non_negative_int, positive_int, probability
from .bench_cmd import add_threads_argument, set_threads
from .progress import plural

BYTE_VOCAB = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="NAME_OR_FOLDER", help="config name / .toml path, or a checkpoint folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt-ids", help="comma-separated token ids, e.g. 1,2,3")
    source.add_argument("--prompt", help="text, fed as UTF-8 bytes (needs a vocabulary of >= 256 tokens)")
    parser.add_argument("--max-new-tokens", type=positive_int, default=20, help="tokens to generate")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy; > 0 samples")
    parser.add_argument("--top-k", type=positive_int, default=None, help="sample among the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=probability, default=None, help="sample within the top-p probability mass (default: all)")
    parser.add_argument("--eos-id", type=non_negative_int, default=None, help="stop at this token (default: the config's eos_id)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random init and of sampling")
    add_threads_argument(parser)
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

    def fastest(n_tokens: int) -> tuple[torch.Tensor, float]:
        # the fastest of 3 runs: on a busy machine one slow run would otherwise make the
        # difference below (decode = all - prefill) meaningless, even negative
        times = []
        for _ in range(3):
            start = time.perf_counter()
            out = generate(model, ids, n_tokens, **kwargs)
            times.append(time.perf_counter() - start)
        return out, min(times)

    _, prefill = fastest(1)
    new, total = fastest(max_new_tokens)
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
    set_threads(args.threads)
    model, described = load_model(args.model, args.seed)
    model.eval()
    ids = prompt_ids(args, model)
    eos_id = args.eos_id if args.eos_id is not None else model.config.tokens.eos_id
    if eos_id is not None and not 0 <= eos_id < model.config.model.vocab_size:
        raise ValueError(f"--eos-id: {eos_id} is outside the vocabulary [0, {model.config.model.vocab_size})")
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
        rate = report["decode_tokens_per_s"]
        speed = f"{rate:.1f} tokens/s" if rate is not None else "too fast to time"
        print(
            f"decode:  {plural(steps, 'step')} in {decode_s * 1e3:.2f} ms: "
            f"{speed}, {report['decode_ms_per_token']:.3f} ms/token"
        )
    return 0
