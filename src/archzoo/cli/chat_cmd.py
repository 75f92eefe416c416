"""Chat with a checkpoint folder: its chat template, a multi-turn history, answers streamed as they decode.

archzoo chat path/to/hf-folder
archzoo chat path/to/hf-folder --system "Answer briefly." < questions.txt

Each line read from standard input is one user turn (typed, or piped: one answer
per line of input, printed on its own line). The prompt is the folder's
chat_template (tokenizer_config.json or chat_template.jinja) rendered over the
whole conversation so far, or the vocabulary's own chat format (ChatGLM-6B's
[Round N] prompt, Qwen v1's ChatML); an answer stops at an end-of-turn token (eos,
generation_config.json's eos ids, the template's e.g. <|im_end|> / <|eot_id|>).
Typed commands: /reset forgets the conversation, /exit (or end of input) quits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..errors import InputError
from ..models.hf import load_pretrained
from ..text import Chat
from .argtypes import non_negative_float, non_negative_int, positive_int, probability
from .bench_cmd import add_threads_argument, set_threads
from .quant_args import add_quantize_arguments, apply_quantize
from .text_source import find_tokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="FOLDER", help="a checkpoint folder with its tokenizer files")
    parser.add_argument(
        "--tokenizer", metavar="DIR", default=None, help="a folder with the tokenizer (default: the checkpoint folder)"
    )
    parser.add_argument("--system", default=None, help="a system message opening the conversation")
    parser.add_argument("--max-new-tokens", type=positive_int, default=256, help="longest answer, in tokens")
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy; > 0 samples")
    parser.add_argument(
        "--top-k", type=positive_int, default=None, help="sample among the k most likely tokens (default: all)"
    )
    parser.add_argument(
        "--top-p", type=probability, default=None, help="sample within the top-p probability mass (default: all)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of sampling")
    add_threads_argument(parser)
    add_quantize_arguments(parser)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)
    if not Path(args.folder).is_dir():
        raise InputError(f"{args.folder}: not a folder (archzoo chat takes a checkpoint folder with its tokenizer)")
    tokenizer = find_tokenizer(args.folder, args.tokenizer)
    if tokenizer is None:
        raise InputError(f"{args.folder}: no tokenizer files to chat with; pass --tokenizer DIR")
    model = apply_quantize(load_pretrained(args.folder).eval(), args)
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p}
    if args.temperature > 0:
        sampling["generator"] = torch.Generator().manual_seed(args.seed)
    chat = Chat(model, tokenizer, max_new_tokens=args.max_new_tokens, system=args.system, sampling=sampling)
    interactive = sys.stdin.isatty()

    def show(piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":
            return 0
        text = line.rstrip("\n")
        if text.strip() == "/reset":
            chat.reset()
            continue
        if not text.strip():
            continue
        chat.send(text, on_text=show)
        print(flush=True)
