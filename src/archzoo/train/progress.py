"""The progress bar of a run: steps done, loss, tokens/s, elapsed and time left (tqdm)."""

from __future__ import annotations

import sys


class StepBar:
    """A tqdm bar over optimizer steps; ``show(record)`` advances it by one step."""

    def __init__(self, total: int, initial: int, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, initial=initial, unit="step", desc="train", disable=not enabled, file=sys.stderr, dynamic_ncols=True
        )
        self.val = None

    def show(self, record: dict) -> None:
        if "val_loss" in record:
            self.val = record["val_loss"]
        parts = [f"loss {record['loss']:.3f}"]
        if self.val is not None:
            parts.append(f"val {self.val:.3f}")
        if record.get("tokens_per_s"):
            parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
        self.bar.set_postfix_str(", ".join(parts), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, initial: int, enabled: bool = True) -> StepBar:
    return StepBar(total, initial, enabled)
