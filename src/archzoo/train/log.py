"""The run's record: ``log.jsonl``, one JSON object per optimizer step.

Every line has ``step`` (1-based), ``tokens`` (training tokens seen so far),
``loss`` (mean next-token cross-entropy of the step's batch, nats), ``lr``,
``grad_norm`` (global L2 norm before clipping), ``tokens_per_s`` (the step's
tokens over its wall time, evaluation and saving excluded) and ``time``
(seconds since the run started, resumed parts included). MoE runs add
``aux_loss``; evaluation steps add ``val_loss`` and ``val_ppl`` (= exp(val_loss)); the
step whose memory was measured (the second: the first with AdamW's state) adds
``peak_tensor_bytes`` (``memory.py``).
Floats are written with Python's shortest round-trip repr, so two runs can be
compared to the last bit.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    """The records of a ``log.jsonl`` (an empty list if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class StepLog:
    """Appends records to ``log.jsonl``; ``truncate(step)`` drops records after a resumed checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def truncate(self, step: int) -> list[dict]:
        kept = [r for r in read_log(self.path) if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        return kept

    def append(self, record: dict) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
