"""A training run in a folder: start it, watch it, stop it, resume it.

    OUT/
      run.json              where the model came from, its config, the data, the settings, the method
      log.jsonl             one record per step (``log.py``)
      loss.png              training and validation loss against tokens seen (``plot.py``)
      checkpoints/step-N/   the newest checkpoints (``checkpoint.py``), every ``save_every`` steps
      model/                the trained artefact at the end (full training: a Hugging Face folder,
                            with the source checkpoint's tokenizer when fine-tuning one)

``train(...)`` checks everything it can before the first step (the output
folder, ``save``'s target and that the artefact can be written at all), so a
run never fails at its end for a reason known at its start. ``resume(OUT)``
needs nothing else: it rebuilds the model, data and trainer from ``run.json``,
loads the newest checkpoint, drops log records after it and goes on; the
losses it logs equal, bit for bit, those of a run that was never stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..config import Config, load_config
from ..errors import CheckpointError, InputError
from ..models.decoder import build_model
from ..models.hf import UnsupportedConfig, load_pretrained
from ..models.hf.io import companion_files
from . import data as data_mod
from .checkpoint import checkpoint_name, list_checkpoints, prune_checkpoints
from .distributed import parallel_run
from .log import StepLog
from .loop import Trainer
from .memory import TensorMemory
from .methods import METHODS, FullTraining
from .plot import plot_losses
from .progress import progress_bar
from .settings import TrainSettings

RUN_FILE = "run.json"
DEFAULT_CORPUS = Path(__file__).parent / "corpus" / "shakespeare.txt"


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves: the trained model and its records."""

    out: Path
    model: nn.Module
    tokenizer: object
    records: list[dict]
    finished: bool  # False when stopped by stop_after before the last step
    artefact: Path | None = None  # OUT/model, when written
    data: data_mod.Split | None = None
    settings: TrainSettings | None = None
    method_name: str = "full"
    method_spec: dict = field(default_factory=dict)  # run.json's "method" (LoRA rank, prefix length, ...)
    notes: list[str] = field(default_factory=list)
    world_size: int = 1  # processes that trained it (torchrun / --nproc)


def build_source_model(source: dict, seed: int) -> nn.Module:
    """The model a run starts from: a checkpoint folder's weights, or a config's seeded random init.

    The RNG is seeded either way: adapters added next (LoRA's A) draw from it."""

    torch.manual_seed(seed)
    if "checkpoint" in source:
        return load_pretrained(source["checkpoint"])
    return build_model(Config.from_dict(source["config_dict"], source["config"]))


def describe_source(name_or_folder: str | os.PathLike) -> dict:
    """run.json's record of where the model comes from."""
    path = Path(name_or_folder)
    if path.is_dir():
        return {"checkpoint": str(path.resolve())}
    cfg = load_config(str(name_or_folder))
    return {"config": str(name_or_folder), "config_dict": cfg.to_dict()}


def load_data(spec: dict, vocab_size: int, tokenizer_folder: str | None, settings: TrainSettings):
    """(tokenizer, split, spec with the stream's size and fingerprint) for run.json's ``data`` entry."""
    tokenizer = data_mod.tokenizer_for(vocab_size, tokenizer_folder)
    if "ids" in spec:
        ids = data_mod.read_ids(spec["ids"])
        source = f"--ids {spec['ids']}"
    else:
        ids = data_mod.encode_documents(data_mod.read_text(spec["text"]), tokenizer)
        source = f"--text {spec['text']}"
    data_mod.check_ids(ids, vocab_size, source)
    split = data_mod.split(ids, settings.val_fraction, settings.seq_len, source)
    return tokenizer, split, {**spec, "tokens": ids.numel(), "sha256": data_mod.fingerprint(ids)}


def check_output_folder(out: Path, overwrite: bool, flag: str = "--out") -> None:
    """``CheckpointError`` unless ``out`` can be created (or, with overwrite, replaced) and written."""
    if out.exists() and not out.is_dir():
        raise CheckpointError(f"{flag} {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CheckpointError(f"{flag} {out}: the folder is not empty; pass --overwrite (overwrite=True) to replace it")
    parent = out if out.is_dir() else next((p for p in out.parents if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise CheckpointError(f"{flag} {out}: {parent} is not a writable folder")


def train(
    source: str | os.PathLike,
    *,
    out: str | os.PathLike,
    text: str | os.PathLike | None = None,
    ids: str | os.PathLike | None = None,
    settings: TrainSettings | None = None,
    method=None,
    save: str | os.PathLike | None = None,
    overwrite: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    on_start=None,
) -> RunResult:
    """Train a config (random init) or a checkpoint folder (fine-tuning) into the run folder ``out``.

    text: a text file or a folder of ``*.txt`` files; ids: a .npy/.pt/.bin token-id file;
    neither: the shipped Shakespeare sample (``corpus/SOURCE.md``). save: also write the
    artefact there at the end. stop_after: end after this step as if interrupted.
    on_start(trainer): called once every check has passed, before the first step.
    """
    settings = (settings or TrainSettings()).check()
    method = method or FullTraining()
    out = Path(out)
    if text is not None and ids is not None:
        raise InputError("give text or ids, not both")
    run = parallel_run(settings, method)  # one process, or this one's place among torchrun's
    check_output_folder(out, overwrite)
    if save is not None:
        check_output_folder(Path(save), overwrite, "--save")
    source_spec = describe_source(source)
    model = run.build(source_spec, settings, method)
    data_spec = {"ids": str(Path(ids).resolve())} if ids is not None else {"text": str(Path(text or DEFAULT_CORPUS).resolve())}
    tokenizer_folder = source_spec.get("checkpoint")
    tokenizer, split, data_spec = load_data(data_spec, model.config.model.vocab_size, tokenizer_folder, settings)
    if settings.seq_len > model.config.model.max_seq_len:
        raise InputError(f"seq_len (--seq-len): {settings.seq_len} exceeds the config's max_seq_len {model.config.model.max_seq_len}")
    if save is not None:
        method.check_save(model, Path(save))
    trainer = Trainer(model, split, settings, method=method, parallel=run.parallel)
    run.barrier()  # every process has checked the output folder before rank 0 replaces it
    if run.parallel.is_main:
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
    run_info = {
        "source": source_spec,
        "hf_architecture": getattr(model, "hf_architecture", None),
        "tokenizer": None if isinstance(tokenizer, data_mod.ByteTokenizer) else tokenizer_folder,
        "data": data_spec,
        "settings": settings.to_dict(),
        "method": method.spec(),
        "save": str(Path(save).resolve()) if save is not None else None,
    }
    if run.parallel.is_main:
        (out / RUN_FILE).write_text(json.dumps(run_info, indent=2) + "\n", encoding="utf-8")
    run.barrier()  # the run folder exists before any process writes a checkpoint into it
    if on_start is not None:  # on every process (a sharded model's forward needs them all)
        on_start(trainer)
    return _run(out, trainer, tokenizer, run_info, [], stop_after, progress, run)


def read_run_description(out: Path) -> tuple[dict, TrainSettings, object]:
    """The run folder's run.json, with its settings and training method rebuilt (CheckpointError naming
    the folder or file when it is not a run folder or cannot be read)."""
    info_path = out / RUN_FILE
    if not info_path.is_file():
        raise CheckpointError(f"--resume {out}: no {RUN_FILE} (not a run folder written by archzoo train)")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        settings = TrainSettings.from_dict(info["settings"], str(info_path))
        method = METHODS[info["method"]["method"]](info["method"])
    except (KeyError, ValueError) as err:
        raise CheckpointError(f"{info_path}: unreadable run description ({err})") from None
    return info, settings, method


def resume(out: str | os.PathLike, *, stop_after: int | None = None, progress: bool = True) -> RunResult:
    """Continue the run in ``out`` from its newest checkpoint (everything else comes from run.json)."""
    out = Path(out)
    info, settings, method = read_run_description(out)
    checkpoints = list_checkpoints(out / "checkpoints")
    if not checkpoints:
        raise CheckpointError(f"--resume {out}: no checkpoint yet (the run stopped before its first save)")
    step, folder = checkpoints[-1]
    run = parallel_run(settings, method)
    model = run.build(info["source"], settings, method)
    if info.get("hf_architecture"):
        model.hf_architecture = info["hf_architecture"]
    tokenizer, split, data_spec = load_data(
        {k: v for k, v in info["data"].items() if k in ("text", "ids")}, model.config.model.vocab_size, info.get("tokenizer"), settings
    )
    if data_spec["sha256"] != info["data"]["sha256"]:
        raise CheckpointError(f"--resume {out}: the training data changed since the run started ({out / RUN_FILE}: data)")
    trainer = Trainer(model, split, settings, method=method, parallel=run.parallel)
    state = run.load_checkpoint(folder, trainer)
    if state.step != step:
        raise CheckpointError(f"{folder}/trainer.pt: holds step {state.step}, the folder name says {step}")
    records = StepLog(out / "log.jsonl").truncate(step) if run.parallel.is_main else []
    run.barrier()
    return _run(out, trainer, tokenizer, info, records, stop_after, progress, run)


def _run(out: Path, trainer: Trainer, tokenizer, info: dict, records: list[dict], stop_after, progress, run) -> RunResult:
    s = trainer.settings
    main = run.parallel.is_main
    log = StepLog(out / "log.jsonl")
    title = f"{trainer.model.config.name}: {s.steps} steps of {s.tokens_per_step:,} tokens"
    elapsed = records[-1]["time"] if records else 0.0
    started = time.perf_counter() - elapsed
    bar = progress_bar(s.steps, trainer.step, enabled=progress and main)
    finished = False
    try:
        measure_at = min(2, s.steps)  # the first step with AdamW's state; the same step in a resumed run
        while trainer.step < s.steps:
            if trainer.step + 1 == measure_at:
                with TensorMemory().track_training(trainer.model, trainer.optimizer) as memory:
                    record = trainer.train_step()
                record["peak_tensor_bytes"] = run.parallel.max_int(memory.peak)  # per process: the largest
                if run.parallel.world > 1:
                    record["world_size"] = run.parallel.world
            else:
                record = trainer.train_step()
            step = record["step"]
            last = step == s.steps
            if last or (s.eval_every and step % s.eval_every == 0):
                val = trainer.evaluate()
                if val is not None:
                    record["val_loss"] = val
                    record["val_ppl"] = math.exp(min(val, 700.0))
            record["time"] = time.perf_counter() - started
            if main:
                log.append(record)
            records.append(record)
            bar.show(record)
            if last or (s.save_every and step % s.save_every == 0):
                checkpoints = out / "checkpoints"
                run.save_checkpoint(checkpoints / checkpoint_name(step), trainer)
                if main:
                    prune_checkpoints(checkpoints, s.keep_checkpoints)
                    plot_losses(records, out / "loss.png", title)
            if stop_after is not None and step >= stop_after and not last:
                break
        finished = trainer.step >= s.steps
    finally:
        bar.close()
    result = RunResult(
        out, trainer.model, tokenizer, records, finished, data=trainer.data, settings=s,
        method_name=trainer.method.spec()["method"],
        method_spec=trainer.method.spec(), world_size=run.parallel.world,
    )  # fmt: skip
    if main and plot_losses(records, out / "loss.png", title) is None:
        result.notes.append("loss.png not drawn: matplotlib is not installed (pip install 'archzoo[plot]')")
    if finished:
        result.model = run.gathered(trainer)  # the whole model, on rank 0 (None elsewhere); itself on one process
        if main:
            _save_artefacts(result, result.model, trainer.method, info)
        run.barrier()
    return result


def _save_artefacts(result: RunResult, model: nn.Module, method, info: dict) -> None:
    target = result.out / getattr(method, "artefact", "model")
    source = info["source"].get("checkpoint")  # fine-tuning: its tokenizer goes with the tuned weights
    companions = companion_files(Path(source)) if source else []
    try:
        method.check_save(model, target)
    except UnsupportedConfig as err:
        result.notes.append(f"no {target}: {str(err).splitlines()[0]} (the checkpoint in checkpoints/ holds the weights)")
    else:
        method.save(model, target, companions)  # replaces the folder atomically: a kill here keeps the old one
        result.artefact = target
    if info.get("save"):
        method.save(model, Path(info["save"]), companions)
