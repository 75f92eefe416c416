"""Who this process is in a multi-process run, from the environment ``torchrun`` sets.

    RANK          this process's index among all processes, 0 .. WORLD_SIZE - 1
    WORLD_SIZE    processes in the run (every node's together)
    LOCAL_RANK    this process's index on its node (picks the GPU on a CUDA node)
    MASTER_ADDR, MASTER_PORT   where the rendezvous (the TCP store) listens

``torchrun`` (``python -m torch.distributed.run``) sets all of them; ``archzoo train
--nproc N`` starts it (``launch.py``). Without them a process is a world of one and
nothing distributed is touched: one process is plain training.

The backend follows the device: NCCL on CUDA, gloo on CPU (how the tests run, on
localhost).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ...errors import InputError

TIMEOUT = timedelta(minutes=10)  # a process that waits on a dead peer gives up (and torchrun ends the others)


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that prints, writes run.json, the log and the exported folders."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when torchrun's variables say this process is one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def environment() -> DistEnv:
    """Read torchrun's variables; ``InputError`` names a variable that is missing or malformed."""
    values = {}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        text = os.environ.get(name)
        if text is None or not text.isdigit():
            raise InputError(f"{name}: torchrun sets it to a non-negative integer, got {text!r} (start with torchrun or --nproc)")
        values[name] = int(text)
    if values["RANK"] >= values["WORLD_SIZE"]:
        raise InputError(f"RANK: {values['RANK']} is not below WORLD_SIZE {values['WORLD_SIZE']}")
    device = torch.device("cuda", values["LOCAL_RANK"]) if torch.cuda.is_available() else torch.device("cpu")
    return DistEnv(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], device)


def init_distributed() -> DistEnv:
    """Join the process group (once) and return this process's place in it."""
    env = environment()
    if not dist.is_initialized():
        if env.device.type == "cuda":
            torch.cuda.set_device(env.device)
        backend = "nccl" if env.device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=env.rank, world_size=env.world, timeout=TIMEOUT)
    return env


def current() -> DistEnv | None:
    """The run's ``DistEnv`` when a process group of more than one process is up, else None."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return environment()
