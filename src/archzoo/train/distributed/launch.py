"""``archzoo train ... --nproc N``: start N processes on this machine with torchrun.

The command becomes

    python -m torch.distributed.run --standalone --nproc-per-node N -m archzoo train ...

(``torchrun`` is the same program): ``--standalone`` runs the rendezvous on this
machine on a free port, each process gets torchrun's RANK / WORLD_SIZE / LOCAL_RANK
(``env.py``) and runs the same ``archzoo train`` command without ``--nproc``, and
torchrun ends the others if one fails. ``torchrun --nproc-per-node N -m archzoo
train ...`` started by hand (or across machines, README "Beyond one process") is
the same run. Each process gets ``OMP_NUM_THREADS`` = cores / N unless it is set.
"""

from __future__ import annotations

import os
import subprocess
import sys


def strip_nproc(argv: list[str]) -> list[str]:
    """``argv`` without ``--nproc N`` / ``--nproc=N``."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc":
            skip = True
        elif not item.startswith("--nproc="):
            out.append(item)
    return out


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "archzoo", *argv]


def launch(argv: list[str], nproc: int) -> int:
    """Run ``archzoo <argv>`` as ``nproc`` processes; returns torchrun's exit status."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    process = subprocess.Popen(torchrun_command(strip_nproc(argv), nproc), env=env)
    try:
        return process.wait()
    except BaseException:  # Ctrl-C or a kill of this process: torchrun ends its workers on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        raise
