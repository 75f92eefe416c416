"""Training beyond one process: PyTorch's FSDP2 and distributed checkpoints, one file per idea.

    env.py            who this process is (torchrun's RANK, WORLD_SIZE, ...), joining the group
    launch.py         ``archzoo train ... --nproc N``: starts torchrun with N processes
    shard.py          ``fully_shard`` per decoder layer, then the root; MixedPrecisionPolicy
    init_by_parts.py  a meta model's init replayed, keeping only this process's shards
    build.py          meta build -> shard -> materialise, the same weights as one process
    batch.py          each process's rows of the global batch, and the numbers that combine
    checkpoint.py     DCP checkpoints: sharded, parallel, atomic; N processes -> M
    export.py         the whole model on rank 0, for save_pretrained / the PEFT adapter
    runner.py         what train() / resume() ask of one process or of several

One code path: ``train`` and ``resume`` (``train/run.py``) and the loop
(``train/loop.py``) are the same for one process and for N; a world of one is
plain training.
"""

from .env import DistEnv, init_distributed, launched_by_torchrun
from .runner import check_sharding, parallel_run

__all__ = ["DistEnv", "check_sharding", "init_distributed", "launched_by_torchrun", "parallel_run"]
