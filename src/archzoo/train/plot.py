"""``loss.png``: training and validation loss against training tokens seen."""

from __future__ import annotations

from pathlib import Path


def plot_losses(records: list[dict], path: Path, title: str) -> Path | None:
    """Draw the losses of ``records`` (``log.jsonl`` lines) into ``path``; None without matplotlib.

    A bare ``Figure`` (no pyplot): the caller's matplotlib backend stays as it was, so a notebook that
    trains keeps showing its own figures inline."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    train = [(r["tokens"], r["loss"]) for r in records]
    val = [(r["tokens"], r["val_loss"]) for r in records if "val_loss" in r]
    fig = Figure(figsize=(7, 4.2), dpi=110)
    ax = fig.subplots()
    if train:
        ax.plot(*zip(*train), label="training loss (per step)", color="tab:blue", linewidth=1, alpha=0.8)
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss (held-out tail)", color="tab:orange", markersize=4)
    ax.set_title(title)
    ax.set_xlabel("training tokens seen")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    tmp.replace(path)
    return path
