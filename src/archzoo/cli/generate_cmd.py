"""Decode tokens from a model (a config with random weights, or a checkpoint folder) and time it.

archzoo generate path/to/hf-folder --prompt "Hello world"   (the folder's tokenizer; text streams as it decodes)
archzoo generate path/to/hf-folder --prompt-ids 1,2,3
archzoo generate llama-tiny --prompt-ids 1,2,3 --max-new-tokens 20
archzoo generate llama-tiny --prompt "Hello"        (random weights, no tokenizer: UTF-8 bytes as ids)

Prints the new token ids, their text, and the decode speed (prefill timed apart).
Text needs a tokenizer (``--tokenizer DIR``, else the checkpoint folder's own:
tokenizer.json, tokenizer.model, qwen.tiktoken or ice_text.model); a checkpoint
without one is refused unless its vocabulary is 256 bytes.
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
from ..memory_guard import require_inference_memory
from ..models.decoder import build_model
from ..models.hf import load_pretrained
from ..text.stream import StreamDecoder
from .argtypes import non_negative_float, non_negative_int, positive_int, probability
from .bench_cmd import add_threads_argument, set_threads
from .progress import plural
from .quant_args import add_quantize_arguments, apply_quantize
from .text_source import BYTE_VOCAB, bytes_allowed, decode_bytes, find_tokenizer, no_tokenizer_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="NAME_OR_FOLDER", help="config name / .toml path, or a checkpoint folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt-ids", help="comma-separated token ids, e.g. 1,2,3")
    source.add_argument("--prompt", help="text, encoded by the tokenizer (without one: UTF-8 bytes, see above)")
    parser.add_argument(
        "--tokenizer", metavar="DIR", default=None, help="a folder with the tokenizer (default: the checkpoint folder)"
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=20, help="tokens to generate")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy; > 0 samples")
    parser.add_argument("--top-k", type=positive_int, default=None, help="sample among the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=probability, default=None, help="sample within the top-p probability mass (default: all)")
    parser.add_argument("--eos-id", type=non_negative_int, default=None, help="stop at this token (default: the config's eos_id)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random init and of sampling")
    add_threads_argument(parser)
    add_quantize_arguments(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--force", action="store_true", help="run even if the memory it needs looks larger than the memory available (default: refuse)")


def load_model(name_or_folder: str, seed: int) -> tuple[torch.nn.Module, str]:
    """A checkpoint folder through ``load_pretrained``; otherwise a config with seeded random weights."""
    if Path(name_or_folder).is_dir():
        return load_pretrained(name_or_folder), f"checkpoint {name_or_folder}"
    cfg = load_config(name_or_folder)
    torch.manual_seed(seed)
    return build_model(cfg), f"{cfg.name} (random weights, seed {seed})"


def prompt_ids(args: argparse.Namespace, model: torch.nn.Module, tokenizer) -> list[int]:
    """The prompt as token ids (the tokenizer's, else UTF-8 bytes where allowed), checked against the vocabulary."""
    vocab = model.config.model.vocab_size
    if args.prompt is not None:
        if tokenizer is not None:
            ids = tokenizer.encode(args.prompt)
        elif bytes_allowed(args.model, vocab):
            ids = list(args.prompt.encode("utf-8"))
        else:
            raise no_tokenizer_error(args.model, vocab, "--prompt")
    else:
        try:
            ids = [int(part) for part in args.prompt_ids.split(",") if part.strip()]
        except ValueError:
            raise ValueError(f"--prompt-ids: expected comma-separated integers, got {args.prompt_ids!r}") from None
    if not ids:
        raise ValueError("the prompt is empty")
    bad = [i for i in ids if not 0 <= i < vocab]
    if bad:
        source = "--prompt-ids" if args.prompt is None else f"--prompt: the tokenizer of {tokenizer.folder} gives"
        raise ValueError(f"{source}: ids {bad[:10]} are outside the vocabulary [0, {vocab}) of the model")
    return DECODE_SCHEMES[model.config.position.kind].complete_prompt(ids, model.config)


def timed_generate(
    model, ids: torch.Tensor, max_new_tokens: int, stop=None, stream=None, **kwargs
) -> tuple[torch.Tensor, float, float]:
    """(new ids, prefill seconds, seconds for all the decode steps after it), each the fastest of 3 runs.

    Both times come from the same run, split where the first new token is chosen, so the decode
    time is never a difference of two runs (which a busy machine can make meaningless, even negative).
    stop: ``on_token`` of every run (True ends it); stream: ``on_token`` of the last run, whose
    tokens are returned (it prints the text as it decodes, and stops where ``stop`` would)."""
    generate(model, ids, min(2, max_new_tokens), on_token=stop, **kwargs)  # warm-up: first-call allocations
    prefill = decode = float("inf")
    for run in range(3):
        callback = stream if run == 2 and stream is not None else stop
        chosen = []

        def on_token(token: torch.Tensor, callback=callback, chosen=chosen) -> bool:
            chosen.append(time.perf_counter())
            return bool(callback(token)) if callback is not None else False

        start = time.perf_counter()
        new = generate(model, ids, max_new_tokens, on_token=on_token, **kwargs)
        end = time.perf_counter()
        prefill = min(prefill, chosen[0] - start)
        decode = min(decode, end - chosen[0])
    return new, prefill, decode


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
    prompt_bound = len((args.prompt or args.prompt_ids or "").encode("utf-8"))  # >= its tokens
    require_inference_memory(args.model, prompt_bound + args.max_new_tokens, force=args.force)
    model, described = load_model(args.model, args.seed)
    model = apply_quantize(model.eval(), args)
    tokenizer = find_tokenizer(args.model, args.tokenizer)
    ids = prompt_ids(args, model, tokenizer)
    eos_id = next((i for i in (args.eos_id, model.config.tokens.eos_id) if i is not None), None)
    if eos_id is not None and not 0 <= eos_id < model.config.model.vocab_size:
        raise ValueError(f"--eos-id: {eos_id} is outside the vocabulary [0, {model.config.model.vocab_size})")
    stops = set()
    if tokenizer is not None and args.eos_id is None:  # the folder's own stop tokens (generation_config.json)
        eos_id = eos_id if eos_id is not None else tokenizer.eos_id
        stops = set(tokenizer.settings.stop_ids) - {eos_id}
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "eos_id": eos_id}
    if args.temperature > 0:
        sampling["generator"] = torch.Generator().manual_seed(args.seed)
    decode = (lambda ids: tokenizer.decode(ids, skip_special_tokens=True)) if tokenizer is not None else None
    if decode is None and args.prompt is not None:
        decode = decode_bytes
    if not args.json:
        print(f"model:   {described}")
        if tokenizer is not None:
            print(f"tokens:  {tokenizer.format} from {tokenizer.folder} ({tokenizer.vocab_size} ids)")
        print(f"prompt:  {len(ids)} tokens {ids}")
    text_stream = StreamDecoder(decode) if decode is not None and not args.json else None

    def stop(token: torch.Tensor) -> bool:
        return int(token[0]) in stops

    def stream(token: torch.Tensor) -> bool:
        token_id = int(token[0])
        if token_id != eos_id and token_id not in stops:
            print(text_stream.push(token_id), end="", flush=True)
        return token_id in stops

    if text_stream is not None:
        print("text:    ", end="", flush=True)
    new, prefill_s, decode_s = timed_generate(
        model, torch.tensor([ids]), args.max_new_tokens, stop if stops else None,
        stream if text_stream is not None else None, **sampling,
    )  # fmt: skip
    new_ids = new[0].tolist()
    if text_stream is not None:
        print(text_stream.finish())
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
    if decode is not None:
        text_ids = new_ids[:-1] if new_ids[-1] == eos_id or new_ids[-1] in stops else new_ids
        report["text"] = decode(text_ids)
    if tokenizer is not None:
        report["tokenizer"] = f"{tokenizer.format} from {tokenizer.folder}"
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print(f"new:     {len(new_ids)} tokens {new_ids}")
    if tokenizer is None and decode is not None:
        print(f"         (no tokenizer: ids are UTF-8 bytes; ids >= {BYTE_VOCAB} are not bytes and are left out)")
    print(f"prefill: {len(ids)} tokens in {report['prefill_ms']:.2f} ms")
    if steps:
        rate = report["decode_tokens_per_s"]
        speed = f"{rate:.1f} tokens/s" if rate is not None else "too fast to time"
        print(
            f"decode:  {plural(steps, 'step')} in {decode_s * 1e3:.2f} ms: "
            f"{speed}, {report['decode_ms_per_token']:.3f} ms/token"
        )
    return 0
