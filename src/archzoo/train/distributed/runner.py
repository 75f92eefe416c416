"""What ``train`` / ``resume`` ask of the processes: build, save, load, gather, wait.

``parallel_run`` picks ``OneProcessRun`` (plain training, the files of
``train/checkpoint.py``) or, inside torchrun with more than one process,
``ShardedRun`` (``build.py``, ``checkpoint.py``, ``export.py``), after checking the
rules a sharded run has (each refusal names the flag and the rule).
"""

from __future__ import annotations

from pathlib import Path

import torch.distributed as dist
from torch import nn

from ...errors import InputError
from ..checkpoint import TrainerState, load_checkpoint, save_checkpoint
from .batch import OneProcess, Processes
from .env import current, init_distributed, launched_by_torchrun


class OneProcessRun:
    parallel = OneProcess()

    def build(self, source: dict, settings, method) -> nn.Module:
        from ..run import build_source_model

        model = build_source_model(source, settings.seed)
        method.prepare(model)
        return model

    def barrier(self) -> None:
        pass

    def save_checkpoint(self, folder: Path, trainer) -> None:
        save_checkpoint(folder, trainer.method.state_dict(trainer.model), trainer.state())

    def load_checkpoint(self, folder: Path, trainer) -> TrainerState:
        from .checkpoint import is_dcp, load_dcp

        if is_dcp(folder):  # written by several processes: DCP reshards it onto this one
            state = load_dcp(folder, trainer)
        else:
            tensors, state = load_checkpoint(folder)
            trainer.method.load_state_dict(trainer.model, tensors, str(folder / "model.safetensors"))
            trainer.load_state(state)
            return state
        trainer.step, trainer.tokens = state.step, state.tokens
        trainer.sampler.load_state(state.data)
        trainer.restore_rng(state.rng)
        return state

    def gathered(self, trainer) -> nn.Module:
        return trainer.model


class ShardedRun(OneProcessRun):
    def __init__(self, env):
        self.env = env
        self.parallel = Processes(env)

    def build(self, source: dict, settings, method) -> nn.Module:
        from .build import build_sharded

        return build_sharded(source, settings.seed, method, self.env, settings.precision)

    def barrier(self) -> None:
        dist.barrier()

    def save_checkpoint(self, folder: Path, trainer) -> None:
        from .checkpoint import save_dcp

        save_dcp(folder, trainer)

    def load_checkpoint(self, folder: Path, trainer) -> TrainerState:
        from .checkpoint import is_dcp, load_dcp, load_full

        if is_dcp(folder):
            state = load_dcp(folder, trainer)
        else:  # written by one process: every process reads it whole and keeps its shards
            tensors, state = load_checkpoint(folder)
            load_full(tensors, state, trainer, str(folder / "model.safetensors"))
        trainer.step, trainer.tokens = state.step, state.tokens
        trainer.sampler.load_state(state.data)
        trainer.restore_rng(state.rng)
        return state

    def gathered(self, trainer) -> nn.Module | None:
        from .export import gather_model

        return gather_model(trainer, self.env)


def check_sharding(settings, method, world: int) -> None:
    """``InputError`` naming the flag and the rule a run on ``world`` processes breaks."""
    if settings.batch % world:
        raise InputError(
            f"--batch: {settings.batch} sequences do not split over --nproc {world} processes; each process "
            f"computes batch / nproc rows of the same global batch, so --batch must be a multiple of {world}"
        )
    if getattr(method, "name", "full") == "prefix":
        raise InputError(
            f"--prefix: P-tuning v2 cannot be sharded over --nproc {world} processes (its key/value table feeds "
            "every layer from outside the layers' FSDP units); train it with --nproc 1, or use --lora"
        )


def parallel_run(settings, method) -> OneProcessRun:
    """The run for this process: plain, or one of torchrun's ``WORLD_SIZE`` processes (process group joined)."""
    if not launched_by_torchrun():
        return OneProcessRun()
    env = current() or init_distributed()
    check_sharding(settings, method, env.world)
    return ShardedRun(env)
