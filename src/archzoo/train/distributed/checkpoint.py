"""Sharded checkpoints with PyTorch's distributed checkpoint (DCP, ``torch.distributed.checkpoint``).

A multi-process run's ``checkpoints/step-N/`` holds

    .metadata, __R_0.distcp   DCP: the method's tensors under "model" and AdamW's state under
                              "optimizer", both by parameter name (FQN), each process writing
                              its own shards in parallel; ``.metadata`` says which slice of which
                              tensor lies where
    trainer.pt                step, tokens seen, data position (epoch, index) and torch's RNG state
                              (rank 0's; every process draws the same numbers)
    checkpoint.json           step, tokens, "format": "dcp" and the world size that wrote it

DCP loads into the tensors it is given, whatever their sharding, so a checkpoint
written by N processes loads on M (resharding), M = 1 (a plain model) included.
One-process checkpoints (``train/checkpoint.py``: safetensors + the optimizer's own
state dict) load on M processes through ``load_full``: each process reads the
whole file and keeps its shards.

The folder is written whole or not at all, as every archzoo folder: rank 0 opens
``atomic_folder``, tells the others the temporary folder's name, every process writes
there, and after a barrier rank 0 commits it with one rename (needs a filesystem
every process sees, as DCP does).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from ...atomic import atomic_folder
from ...errors import CheckpointError
from ..checkpoint import TrainerState

FORMAT = "dcp"


def is_dcp(folder: Path) -> bool:
    return (folder / ".metadata").is_file()


def _optimizer_state(trainer):
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(trainer.model, trainer.optimizer)


def save_dcp(folder: Path, trainer) -> Path:
    """Write ``trainer``'s state as a DCP checkpoint folder (every process calls this)."""
    import torch.distributed.checkpoint as dcp

    parallel = trainer.parallel
    state = {"model": trainer.method.state_dict(trainer.model), "optimizer": _optimizer_state(trainer)}
    meta = trainer.state()
    context = atomic_folder(folder) if parallel.is_main else None
    names = [str(context.__enter__()) if context is not None else None]
    if parallel.world > 1:
        dist.broadcast_object_list(names, src=0)
    tmp = Path(names[0])
    try:
        dcp.save(state, checkpoint_id=tmp)
        if parallel.is_main:
            torch.save({"step": meta.step, "tokens": meta.tokens, "data": meta.data, "rng": meta.rng}, tmp / "trainer.pt")
            info = {"step": meta.step, "tokens": meta.tokens, "format": FORMAT, "world_size": parallel.world}
            (tmp / "checkpoint.json").write_text(json.dumps(info) + "\n")
        if parallel.world > 1:
            dist.barrier()
    except BaseException as err:
        if context is not None:
            context.__exit__(type(err), err, err.__traceback__)
        raise
    if context is not None:
        context.__exit__(None, None, None)
    if parallel.world > 1:
        dist.barrier()  # nobody prunes or reads before the folder is in place
    return folder


def load_dcp(folder: Path, trainer) -> TrainerState:
    """Load a DCP checkpoint into ``trainer`` (its model and optimizer, any sharding); returns its state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    model_state = trainer.method.state_dict(trainer.model)
    optimizer_state = _optimizer_state(trainer)
    state = {"model": model_state, "optimizer": optimizer_state}
    try:
        with warnings.catch_warnings():  # on one process DCP says it loads in one process: that is the point
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(state, checkpoint_id=folder)
    except Exception as err:
        raise CheckpointError(f"{folder}: unreadable distributed checkpoint ({str(err).splitlines()[0][:300]})") from None
    with torch.no_grad():  # DCP fills DTensors in place; a plain model's state_dict() tensors too, but be sure
        own = trainer.method.state_dict(trainer.model)
        for key, value in state["model"].items():
            if own[key] is not value:
                own[key].copy_(value)
    set_optimizer_state_dict(trainer.model, trainer.optimizer, state["optimizer"])
    return _read_meta(folder)


def _read_meta(folder: Path) -> TrainerState:
    try:
        raw = torch.load(folder / "trainer.pt", weights_only=True)
        return TrainerState(raw["step"], raw["tokens"], None, raw["data"], raw["rng"])
    except Exception as err:
        raise CheckpointError(f"{folder}/trainer.pt: unreadable ({err})") from None


def load_full(tensors: dict[str, torch.Tensor], state: TrainerState, trainer, source: str) -> None:
    """A one-process checkpoint (whole tensors, the optimizer's id-keyed state) into a sharded trainer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    own = trainer.method.state_dict(trainer.model)
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    tied = {"lm_head.weight"} if trainer.model.config.model.tie_embeddings else set()
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"{source}: weights do not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})")
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(trainer.model, tensors, options=options)
    names = trainer.parameter_names
    optimizer = state.optimizer
    by_name = {
        "state": {names[i]: value for i, value in optimizer["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in optimizer["param_groups"]],
    }
    set_optimizer_state_dict(trainer.model, trainer.optimizer, by_name, options=StateDictOptions(full_state_dict=True))
