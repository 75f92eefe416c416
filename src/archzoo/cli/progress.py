"""A progress bar on stderr for long commands: done/total, rate, elapsed and time left.

    with Progress(total=120, label="bench", unit="calls") as bar:
        for ...:
            bar.update()

On a terminal the bar redraws in place (at most 10 times a second); into a
file or pipe it writes a plain line at every tenth of the work, so logs stay
short. stdout is left alone (tables and ``--json`` output go there).
"""

from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def plural(n: int, word: str) -> str:
    """``plural(1, "thread")`` -> '1 thread'; ``plural(4, "step")`` -> '4 steps'."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


class Progress:
    """Counts finished units of work and reports them on stderr."""

    def __init__(self, total: int, label: str, unit: str = "steps", stream=None, enabled: bool = True):
        self.total = max(int(total), 1)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_tenth = -1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        width = 24
        filled = round(width * self.done / self.total)
        bar = "#" * filled + "-" * (width - filled)
        eta = _clock(left) if left == left else "?"
        return (
            f"{self.label} [{bar}] {self.done}/{self.total} {self.unit} "
            f"{rate:.1f}/s elapsed {_clock(elapsed)} left {eta}"
        )

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw >= 0.1 or self.done == self.total:
                self._last_draw = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
            return
        tenth = 10 * self.done // self.total
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.line() + "\n")
            self.stream.flush()
