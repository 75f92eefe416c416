"""The knobs of a training run, in one frozen record that a run folder stores (``run.json``).

Every field has a default chosen for the shipped tiny configs on a laptop CPU
(``archzoo train llama-tiny`` learns visible structure of its corpus in well
under a minute on two cores). ``check()`` raises ``InputError`` naming the
field and the rule; the CLI's flags are these fields.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

from ..errors import InputError

PRECISIONS = ("fp32", "bf16", "bf16-pure")
"""fp32: everything float32. bf16: autocast to bfloat16 around the forward pass and the loss, float32 master
weights, gradients and AdamW moments. bf16-pure: weights, gradients and AdamW moments all bfloat16."""


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters and bookkeeping of one run (see each field's comment for its unit)."""

    steps: int = 300  # optimizer steps of the whole run
    batch: int = 16  # sequences per micro-batch
    seq_len: int = 128  # tokens per sequence (targets are the next tokens: windows of seq_len + 1)
    accumulate: int = 1  # micro-batches summed into one optimizer step (gradient accumulation)
    lr: float = 3e-3  # peak learning rate, reached after warmup
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio at the last step
    warmup: int = 20  # steps of linear warm-up from lr / warmup to lr
    weight_decay: float = 0.1  # AdamW's decoupled weight decay (matrices only; not norms, biases)
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global L2 norm of the gradients; 0 = no clipping
    seed: int = 0  # seeds the random init, the data order and torch's RNG
    val_fraction: float = 0.1  # the tail of the token stream held out for validation; 0 = no validation
    eval_every: int = 50  # steps between validation passes (and at the last step); 0 = only at the end
    eval_batches: int = 8  # validation batches per pass (fixed windows from the start of the held-out tail)
    save_every: int = 100  # steps between checkpoints (and at the last step); 0 = only at the end
    keep_checkpoints: int = 1  # newest checkpoints kept in the run folder; older ones are deleted
    precision: str = "fp32"  # one of PRECISIONS
    checkpointing: bool = False  # activation checkpointing per decoder layer (recompute in backward)

    def check(self, label: Callable[[str], str] = str) -> TrainSettings:
        """Raise ``InputError`` naming the first field out of its range; return self.

        ``label(field)`` is how the message names a field: the field itself for the Python API and
        run.json, its flag for the command line (``archzoo train`` passes ``seq_len -> --seq-len``)."""
        positive = ("steps", "batch", "seq_len", "accumulate", "eval_batches", "keep_checkpoints")
        non_negative = ("warmup", "eval_every", "save_every", "seed")
        for name in positive + non_negative:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError(f"{label(name)}: must be an integer, got {value!r}")
            if value < (1 if name in positive else 0):
                raise InputError(f"{label(name)}: must be {'>= 1' if name in positive else '>= 0'}, got {value}")
        for name in ("lr", "weight_decay", "eps", "grad_clip", "min_lr_ratio", "val_fraction", "beta1", "beta2"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{label(name)}: must be a finite number >= 0, got {value!r}")
        if self.lr <= 0:
            raise InputError(f"{label('lr')}: must be > 0, got {self.lr}")
        for name in ("beta1", "beta2", "val_fraction"):
            if getattr(self, name) >= 1:
                raise InputError(f"{label(name)}: must be < 1, got {getattr(self, name)}")
        if self.min_lr_ratio > 1:
            raise InputError(f"{label('min_lr_ratio')}: must be <= 1, got {self.min_lr_ratio}")
        if self.precision not in PRECISIONS:
            raise InputError(f"{label('precision')}: {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.seq_len * self.accumulate

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "run.json") -> TrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{source}: unknown training settings {', '.join(unknown)}")
        return cls(**data).check()
