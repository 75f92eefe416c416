"""Loss and perplexity of a model on a text.

archzoo eval path/to/hf-folder --text held-out.txt
archzoo eval runs/notes --text held-out.txt          (a run folder: its model/ or newest checkpoint)

Text is read with the folder's tokenizer, else as UTF-8 bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import CheckpointError, InputError
from ..models.hf import load_pretrained
from ..train import data as data_mod
from ..train.checkpoint import list_checkpoints, load_checkpoint
from ..train.evaluate import evaluate
from ..train.methods import METHODS
from ..train.run import RUN_FILE, build_source_model
from .quant_args import add_quantize_arguments, apply_quantize


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("folder", type=Path, help="a Hugging Face checkpoint folder, or a run folder of archzoo train")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--text", type=Path, help="a text file or a folder of *.txt files")
    data.add_argument("--ids", type=Path, help="token ids: .npy, .pt or .bin (uint16)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per window (default: min(256, the config's max_seq_len))")
    parser.add_argument("--batch", type=int, default=8, help="windows per forward pass (default: 8)")
    parser.add_argument("--json", action="store_true", help="machine-readable output (default: a line for people)")
    add_quantize_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: show it)")


def load_model(folder: Path):
    """(model, tokenizer folder) of a checkpoint folder or a run folder."""

    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder")
    if (folder / "run.json").is_file():
        if (folder / "model" / "config.json").is_file():
            info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
            return load_pretrained(folder / "model"), info.get("tokenizer")

        checkpoints = list_checkpoints(folder / "checkpoints")
        if not checkpoints:
            raise CheckpointError(f"{folder}: a run folder without model/ or checkpoints/")

        info = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
        model = build_source_model(info["source"], info["settings"]["seed"])
        method = METHODS[info["method"]["method"]](info["method"])
        method.prepare(model)
        tensors, _ = load_checkpoint(checkpoints[-1][1])
        method.load_state_dict(model, tensors, str(checkpoints[-1][1]))
        return model, info.get("tokenizer")
    return load_pretrained(folder), folder


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise InputError(f"--batch: must be >= 1, got {args.batch}")
    model, tokenizer_folder = load_model(args.folder)
    model = apply_quantize(model.float(), args)
    cfg = model.config
    seq_len = args.seq_len if args.seq_len is not None else min(256, cfg.model.max_seq_len)
    if not 1 <= seq_len <= cfg.model.max_seq_len:
        raise InputError(f"--seq-len: must be in [1, {cfg.model.max_seq_len}] (the config's max_seq_len), got {seq_len}")
    if args.ids is not None:
        ids = data_mod.read_ids(args.ids)
    else:
        tokenizer = data_mod.tokenizer_for(cfg.model.vocab_size, tokenizer_folder)
        ids = data_mod.encode_documents(data_mod.read_text(args.text), tokenizer)
    data_mod.check_ids(ids, cfg.model.vocab_size, str(args.ids or args.text))
    result = evaluate(model, ids, seq_len=seq_len, batch=args.batch, progress=not args.no_progress)
    if args.json:
        print(json.dumps({"loss": result.loss, "perplexity": result.perplexity, "tokens": result.tokens, "seq_len": seq_len}))
    else:
        print(f"{args.folder}: loss {result.loss:.4f} nats/token, perplexity {result.perplexity:.3f} over {result.tokens:,} tokens (windows of {seq_len})")
    return 0
