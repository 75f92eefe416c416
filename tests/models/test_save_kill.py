"""A save killed at any instant leaves the folder holding the complete old model or the complete new one.

A worker process (save_worker.py) holds two ~205 MB models, A and B (llama-tiny with a 200,000-token
vocabulary, untied head, float32). It saves them alternately over one folder in forked children; the
test SIGKILLs each child at an instant drawn uniformly from one of N equal slices of the measured save
time (stratified, so the kills cover the whole save: tensor writes, fsyncs, the exchange, the clean-up).
After every kill ``load_pretrained`` must return a model whose every tensor equals A's or B's
(the test builds A and B the same seeded way and checks once, by hash, that they are the worker's).
"""

from __future__ import annotations

import importlib.util
import json
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
_spec = importlib.util.spec_from_file_location("save_worker", WORKER)
_worker_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_worker_module)
fingerprint, big_config = _worker_module.fingerprint, _worker_module.big_config


def same_model(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)

KILLS = 21
VOCAB = 200_000  # 2 x 200,000 x 128 float32 = 205 MB of embedding and head


class Worker:
    def __init__(self, folder: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(folder), str(VOCAB)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )
        self.fingerprints = json.loads(self.proc.stdout.readline())

    def start(self, which: str) -> int:
        self.proc.stdin.write(f"save {which}\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def wait(self) -> tuple[int, float]:
        _, status, seconds = self.proc.stdout.readline().split()
        return int(status), float(seconds)

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
        torch.manual_seed(0)  # the worker's two models, built the same way here to compare against
        models = {"A": archzoo.build_model(big_config(VOCAB)).state_dict()}
        models["B"] = archzoo.build_model(big_config(VOCAB)).state_dict()
        assert not same_model(models["A"], models["B"])
        worker.start("A")
        status, _ = worker.wait()
        assert status == 0
        first = archzoo.load_pretrained(folder)
        assert fingerprint(first) == worker.fingerprints["A"] and same_model(first.state_dict(), models["A"])
        durations = []
        for which in "BA":  # measure a whole save over an existing folder
            worker.start(which)
            status, seconds = worker.wait()
            assert status == 0
            durations.append(seconds)
        save_s = max(durations)
        print(f"one save: {save_s:.2f} s")
        current, seen = "A", {"killed old": 0, "killed new": 0, "finished": 0}
        rng = random.Random(0)
        for i in range(KILLS):
            new = "B" if current == "A" else "A"
            pid = worker.start(new)
            time.sleep(save_s * 1.1 * (i + rng.random()) / KILLS)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it had finished (the worker reaps its children at once)
            status, _ = worker.wait()
            state = archzoo.load_pretrained(folder).state_dict()
            loaded = next((name for name, m in models.items() if same_model(state, m)), None)
            assert loaded in ("A", "B"), f"kill {i}: the folder holds neither the old nor the new model"
            if status == 0:
                assert loaded == new, f"kill {i}: the save finished but the folder holds the old model"
                seen["finished"] += 1
            else:
                seen["killed old" if loaded == current else "killed new"] += 1
            current = loaded
        assert seen["killed old"] >= KILLS // 3, seen  # the kills really fell inside the saves
        worker.start("B" if current == "A" else "A")  # a save after the kills cleans their temporaries
        assert worker.wait()[0] == 0
        assert [p.name for p in root.iterdir() if is_temporary(p)] == []
        print(seen)
    finally:
        worker.close()
        if root != tmp_path:
            shutil.rmtree(root, ignore_errors=True)
