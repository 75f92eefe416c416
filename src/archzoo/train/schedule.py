"""Learning-rate schedule: linear warm-up, then cosine decay (Loshchilov & Hutter 2017, "SGDR").

    lr(t) = peak * (t + 1) / W                                       t < W
    lr(t) = peak * (r + (1 - r) * (1 + cos(pi * p)) / 2),  p = (t - W) / (T - 1 - W)   t >= W

for step t = 0 .. T-1, W warm-up steps and floor ratio r: the first step
after warm-up runs at the peak and the last one at peak * r. The schedule is
a pure function of the step, so a resumed run only needs the step number.
"""

from __future__ import annotations

import math


def learning_rate(step: int, steps: int, peak: float, warmup: int, min_ratio: float = 0.1) -> float:
    """The learning rate of optimizer step ``step`` (0-based) of ``steps``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    span = steps - 1 - warmup
    progress = min((step - warmup) / span, 1.0) if span > 0 else 1.0
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
