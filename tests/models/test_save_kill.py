"""A save killed at any instant leaves the folder holding the complete old model or the complete new one.

A worker process (save_worker.py) holds two ~205 MB models, A and B (llama-tiny with a 200,000-token
vocabulary, untied head, float32). It saves them alternately over one folder in forked children; the
test SIGKILLs each child at an instant drawn uniformly from one of KILLS equal slices of the save time,
the slices in turn (stratified, so the kills cover the whole save: tensor writes, fsyncs, the exchange,
the clean-up). The save time is re-measured by every save that finishes, so a machine whose load
changes during the test still has its kills spread over the whole save; kills that come after a save
has finished do not count, and the test goes on until KILLS kills have fallen inside a save. After every kill
``load_pretrained`` must return a model whose every tensor equals A's or B's (as the worker saved them,
once each, into folders of their own that no kill touches).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import archzoo
from archzoo.atomic import is_temporary

WORKER = Path(__file__).with_name("save_worker.py")
KILLS = 21  # kills that fall inside a save (the issue asks for at least 20)
ATTEMPTS = 3 * KILLS  # kills that land after the save finished are retried, up to this many in all
VOCAB = 200_000  # 2 x 200,000 x 128 float32 = 205 MB of embedding and head


def same_model(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


class Worker:
    def __init__(self, folder: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(folder), str(VOCAB)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )

    def ready(self) -> None:
        assert self.proc.stdout.readline().strip() == "ready"

    def start(self, which: str) -> int:
        self.proc.stdin.write(f"save {which}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def wait(self) -> tuple[int, float]:
        _, status, seconds = self.proc.stdout.readline().split()
        return int(status), float(seconds)

    def save(self, which: str) -> float:
        self.start(which)
        status, seconds = self.wait()
        assert status == 0
        return seconds

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def scratch(tmp_path: Path) -> Path:
    """A folder in RAM (tmpfs) where there is room: the kills test the renames and the clean-up, which work the
    same there, while the writes and fsyncs of 20+ saves of 205 MB take seconds instead of minutes on a disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
        return Path(tempfile.mkdtemp(prefix="archzoo-kill-", dir=shm))
    return tmp_path


def test_killed_saves_leave_the_old_or_the_new_model(tmp_path):
    root = scratch(tmp_path)
    folder = root / "ckpt"
    worker = Worker(folder)
    try:
        worker.ready()
        models = {name: archzoo.load_pretrained(f"{folder}.{name}").state_dict() for name in "AB"}
        assert not same_model(models["A"], models["B"])
        worker.save("A")
        assert same_model(archzoo.load_pretrained(folder).state_dict(), models["A"])
        save_s = worker.save("B")  # a whole save over an existing folder
        assert same_model(archzoo.load_pretrained(folder).state_dict(), models["B"])
        current, seen = "B", {"killed old": 0, "killed new": 0, "finished": 0}
        rng = random.Random(0)
        for attempt in range(ATTEMPTS):
            killed = seen["killed old"] + seen["killed new"]
            if killed == KILLS:
                break
            new = "B" if current == "A" else "A"
            pid = worker.start(new)
            time.sleep(save_s * (attempt % KILLS + rng.random()) / KILLS)  # one of KILLS slices of the save, in turn
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it had finished (the worker reaps its children at once)
            status, seconds = worker.wait()
            state = archzoo.load_pretrained(folder).state_dict()
            loaded = next((name for name, m in models.items() if same_model(state, m)), None)
            assert loaded in ("A", "B"), f"attempt {attempt}: the folder holds neither the old nor the new model"
            if status == 0:
                assert loaded == new, f"attempt {attempt}: the save finished but the folder holds the old model"
                seen["finished"] += 1
                save_s = seconds  # the machine's pace now
            else:
                seen["killed old" if loaded == current else "killed new"] += 1
            current = loaded
        assert seen["killed old"] + seen["killed new"] == KILLS, seen  # the kills really fell inside the saves
        worker.save("B" if current == "A" else "A")  # a save after the kills cleans their temporaries
        assert [p.name for p in root.iterdir() if is_temporary(p)] == []
        print(seen)
    finally:
        worker.close()
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)
