"""Train a config from scratch, or fine-tune a checkpoint folder, into a run folder.

archzoo train llama-tiny                                  (the shipped Shakespeare sample, ~30 s on two cores)
archzoo train llama-tiny --text notes.txt --steps 500 --out runs/notes
archzoo train path/to/hf-folder --text corpus/ --lr 3e-4 --out runs/ft   (fine-tuning; the folder's tokenizer)
archzoo train --resume runs/notes                         (continue from the newest checkpoint, bit-exactly)
archzoo train hf-folder --lora rank=8,alpha=16,targets=q_proj,v_proj   (LoRA: only the adapters train)
archzoo train hf-folder --prefix 16                       (P-tuning v2: 16 trainable key/value slots per layer)
archzoo train llama-tiny --nproc 2                        (FSDP2 over 2 processes; the same losses as one)
torchrun --nproc-per-node 2 -m archzoo train llama-tiny   (the same run, started by torchrun itself)

The run folder holds run.json, log.jsonl (one JSON object per step), loss.png,
checkpoints/ and, at the end, model/ (a Hugging Face folder) or, with --lora /
--prefix, adapter/ (PEFT's format: peft.PeftModel.from_pretrained reads it). Text is read with
the checkpoint folder's tokenizer, else as UTF-8 bytes (vocabularies >= 256).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

import torch

from ..errors import InputError
from ..generate import DECODE_SCHEMES, generate
from ..inspect import estimate_memory
from ..memory_guard import require_training_memory
from ..train import PRECISIONS, TrainSettings, resume, train
from ..train.adapter_methods import PrefixTraining, estimate_kwargs, parse_lora
from ..train.distributed import check_sharding, launched_by_torchrun
from ..train.distributed.launch import launch
from ..train.run import check_output_folder, read_run_description

DEFAULTS = TrainSettings()
DEFAULT_OUT = "runs/{name}"

FLAGS = {  # TrainSettings field -> (type, help); every default is TrainSettings'
    "steps": (int, "optimizer steps"),
    "batch": (int, "sequences per micro-batch"),
    "seq_len": (int, "tokens per sequence"),
    "accumulate": (int, "micro-batches per optimizer step (gradient accumulation)"),
    "lr": (float, "peak learning rate (AdamW), after linear warm-up, then cosine decay"),
    "min_lr_ratio": (float, "the cosine ends at lr x this"),
    "warmup": (int, "warm-up steps"),
    "weight_decay": (float, "AdamW weight decay of matrices"),
    "grad_clip": (float, "max global gradient norm; 0 = no clipping"),
    "seed": (int, "seed of the random init, the data order and torch's RNG"),
    "val_fraction": (float, "tail of the data held out for validation; 0 = none"),
    "eval_every": (int, "steps between validation passes (and the last step); 0 = only the last"),
    "eval_batches": (int, "batches per validation pass"),
    "save_every": (int, "steps between checkpoints (and the last step); 0 = only the last"),
    "keep_checkpoints": (int, "newest checkpoints kept"),
}


def flag(field: str) -> str:
    """The command-line spelling of a TrainSettings field: ``seq_len`` -> ``--seq-len``."""
    return f"--{field.replace('_', '-')}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("model", nargs="?", metavar="NAME_OR_FOLDER", help="config name / .toml path, or a checkpoint folder to fine-tune")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR (takes no other settings)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--text", type=Path, help="a text file or a folder of *.txt files (default: the shipped Shakespeare sample)")
    data.add_argument("--ids", type=Path, help="token ids: .npy, .pt (1-D integer tensor) or .bin (uint16, nanoGPT)")
    parser.add_argument("--out", type=Path, help=f"the run folder (default: {DEFAULT_OUT})")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out / --save folder (default: refuse)")
    parser.add_argument("--save", type=Path, help="also write the trained model there at the end (checked before the first step)")
    for name, (kind, text) in FLAGS.items():
        parser.add_argument(flag(name), type=kind, default=None, help=f"{text} (default: {getattr(DEFAULTS, name)})")
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help=f"fp32; bf16 = autocast, fp32 weights and AdamW state; bf16-pure = all bf16 (default: {DEFAULTS.precision})")
    parser.add_argument("--checkpointing", action="store_true", default=None, help="activation checkpointing per decoder layer: less memory, ~1/3 more compute (default: off)")
    method = parser.add_mutually_exclusive_group()
    method.add_argument(
        "--lora", nargs="?", const="", metavar="SPEC",
        help="train LoRA adapters only: rank=R,alpha=A,targets=NAME,NAME,...,dropout=P (default: rank=8,alpha=16,targets=q_proj,v_proj)",
    )
    method.add_argument("--prefix", type=int, metavar="LENGTH", help="train a P-tuning v2 prefix of LENGTH key/value slots per layer only")
    parser.add_argument("--prefix-projection", type=int, metavar="HIDDEN", help="with --prefix: make it through Linear-tanh-Linear of this width")
    parser.add_argument("--stop-after", type=int, metavar="K", help="end after step K as if interrupted; --resume continues (default: run to the end)")
    parser.add_argument("--sample-tokens", type=int, default=200, help="tokens of the sample generated at the end; 0 = none (default: 200)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (default: show it)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--force", action="store_true", help="run even if the memory it needs looks larger than the memory available (default: refuse)")
    parser.add_argument(
        "--nproc", type=int, metavar="N",
        help="train on N processes of this machine with FSDP2 (started with torchrun; --batch must divide by N; "
        "also with --resume, whatever N the run had) (default: 1, no torchrun)",
    )  # fmt: skip


def settings_from(args: argparse.Namespace) -> TrainSettings:
    given = {f.name: getattr(args, f.name) for f in fields(TrainSettings) if getattr(args, f.name, None) is not None}
    return TrainSettings(**given).check(label=flag)


def method_from(args: argparse.Namespace):
    """--lora / --prefix -> the training method (None: full training)."""
    if args.prefix_projection is not None and args.prefix is None:
        raise InputError("--prefix-projection: needs --prefix LENGTH")
    if args.lora is not None:
        return parse_lora(args.lora)
    if args.prefix is not None:
        if args.prefix < 1:
            raise InputError(f"--prefix: the length must be >= 1, got {args.prefix}")
        if args.prefix_projection is not None and args.prefix_projection < 1:
            raise InputError(f"--prefix-projection: must be >= 1, got {args.prefix_projection}")
        return PrefixTraining(args.prefix, args.prefix_projection or False)
    return None


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads: must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.stop_after is not None and args.stop_after < 1:
        raise InputError(f"--stop-after: must be >= 1, got {args.stop_after}")
    if args.sample_tokens < 0:
        raise InputError(f"--sample-tokens: must be >= 0, got {args.sample_tokens}")
    if args.nproc is not None:
        if args.nproc < 1:
            raise InputError(f"--nproc: must be >= 1 processes, got {args.nproc}")
        if launched_by_torchrun():
            raise InputError(f"--nproc: this process is one of torchrun's (WORLD_SIZE={os.environ['WORLD_SIZE']}); drop --nproc")
    if args.nproc is not None and args.nproc > 1:
        check_before_launch(args)
        return launch(args.argv, args.nproc)
    if args.resume is not None:
        settable = [*FLAGS, "precision", "checkpointing", "text", "ids", "out", "save", "model", "prefix", "prefix_projection"]
        extra = [flag(k) for k in settable if getattr(args, k, None)]
        extra += ["--lora"] if args.lora is not None else []
        if extra:
            raise InputError(f"--resume takes every setting from {args.resume}/run.json; drop {', '.join(extra)}")
        result = resume(args.resume, stop_after=args.stop_after, progress=not args.no_progress)
    else:
        if args.model is None:
            raise InputError("give a config name or checkpoint folder to train, or --resume DIR")
        out = args.out or Path(DEFAULT_OUT.format(name=Path(args.model).stem if Path(args.model).suffix == ".toml" else Path(args.model).name))
        settings = settings_from(args)
        method = method_from(args)
        require_training_memory(args.model, settings.batch, settings.seq_len, settings.checkpointing, force=args.force)

        def announce(trainer) -> None:
            if not trainer.parallel.is_main:
                return
            n = sum(p.numel() for p in trainer.parameters)
            print(
                f"archzoo train {args.model}: {n:,} trainable parameters, {settings.steps} steps of "
                f"{settings.tokens_per_step:,} tokens ({trainer.data.train.numel():,} training tokens, "
                f"{trainer.data.val.numel():,} held out) into {out}",
                flush=True,
            )

        result = train(
            args.model, out=out, text=args.text, ids=args.ids, settings=settings, save=args.save,
            overwrite=args.overwrite, stop_after=args.stop_after, progress=not args.no_progress, on_start=announce,
            method=method,
        )
    if int(os.environ.get("RANK", "0")) == 0:  # one report for the run, not one per process
        report(result, args.sample_tokens)
    return 0


def check_before_launch(args: argparse.Namespace) -> None:
    """Every refusal a run on ``--nproc`` processes would meet, found here, before any process starts."""
    if args.resume is not None:
        _, settings, method = read_run_description(args.resume)
    else:
        if args.model is None:
            raise InputError("give a config name or checkpoint folder to train, or --resume DIR")
        settings, method = settings_from(args), method_from(args)
        if args.out is not None:
            check_output_folder(args.out, args.overwrite)
    check_sharding(settings, method, args.nproc)


def report(result, sample_tokens: int) -> None:
    records = result.records
    last = records[-1] if records else None
    if last is None:
        return
    val = next((r for r in reversed(records) if "val_loss" in r), None)
    line = f"step {last['step']}: loss {records[0]['loss']:.3f} -> {last['loss']:.3f}"
    if val is not None:
        line += f", validation {val['val_loss']:.3f} (perplexity {val['val_ppl']:.2f})"
    print(line + f", {last['time']:.1f} s")
    measured = next((r for r in records if "peak_tensor_bytes" in r), None)
    if measured is not None:
        print(memory_line(result, measured["peak_tensor_bytes"]))
    for note in result.notes:
        print(note)
    if not result.finished:
        print(f"stopped after step {last['step']}; continue with: archzoo train --resume {result.out}")
        return
    print(f"run folder: {result.out} (log.jsonl, loss.png, checkpoints/" + (f", {result.artefact.name}/)" if result.artefact else ")"))
    if sample_tokens:
        print("sample:\n" + sample(result, sample_tokens))


SAMPLE_PROMPT_CHARS = 120
"""At most this much of the held-out text's first line prompts the sample (a corpus without line breaks
would otherwise prompt with all of it)."""


def sample(result, max_new_tokens: int, temperature: float = 0.8, top_k: int = 40, seed: int = 0) -> str:
    """A continuation of the start of the held-out text, to show what the model learned; prompt and
    continuation stay within the config's max_seq_len (the positions the model was trained on)."""
    tokenizer = result.tokenizer
    source = result.data.val if result.data.val.numel() else result.data.train
    text = tokenizer.decode(source[:400].tolist())
    start = text.find("\n\n")
    prompt = text[start + 2 :] if 0 <= start < 300 else text
    prompt = prompt.split("\n")[0]
    if len(prompt) > SAMPLE_PROMPT_CHARS:
        prompt = prompt[:SAMPLE_PROMPT_CHARS].rsplit(" ", 1)[0]
    prompt += "\n"
    model = result.model.float().eval()
    # the prompt as the model's decoding scheme expects it: ChatGLM-6B's ends in [gMASK] <sop>
    ids = DECODE_SCHEMES[model.config.position.kind].complete_prompt(tokenizer.encode(prompt), model.config)
    max_new_tokens = max(1, min(max_new_tokens, model.config.model.max_seq_len - len(ids)))
    new = generate(model, torch.tensor([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
                   generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return prompt + tokenizer.decode(new[0].tolist())


def memory_line(result, measured: float) -> str:
    """Measured peak tensor memory of a step beside ``estimate_memory``'s figure for the same step."""
    s, world = result.settings, getattr(result, "world_size", 1)
    line = f"peak memory of a step: {measured / 2**20:,.1f} MiB of tensors measured" + (" per process" if world > 1 else "")
    adapters = estimate_kwargs(getattr(result, "method_spec", {}))
    if adapters is None:
        return line
    est = estimate_memory(
        result.model.config, batch=s.batch, seq_len=s.seq_len, precision=s.precision, checkpointing=s.checkpointing,
        world_size=world, **adapters,
    ).training_step  # fmt: skip
    details = [s.precision] + (["checkpointing"] if s.checkpointing else []) + ([f"{world} processes"] if world > 1 else [])
    return line + f", {est.peak / 2**20:,.1f} MiB estimated (estimate_memory, {', '.join(details)})"
