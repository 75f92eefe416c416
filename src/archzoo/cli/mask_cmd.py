"""Show GLM's attention masks and 2D position ids: who may see whom.

  archzoo mask glm --length 6 --spans 2:3,4:6         blank infilling of x1..x6
  archzoo mask glm --length 6 --spans 2:3,4:6 --cls   the same text after a [CLS]
  archzoo mask chatglm --prompt-length 3 --generated 3   ChatGLM-6B's prefix LM

Spans are 0-based, half-open, over x1..xn (2:3 is x3) and listed in Part-B
order (``--shuffle SEED`` draws a random order as GLM's pretraining does).
Prints the tokens, targets, both position rows and the mask grid (row = query,
column = key, 1 = may attend); ``--png FILE`` also draws the grid
(needs matplotlib: ``pip install 'archzoo[plot]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_file
from ..glm import blank_infilling, prefix_lm_inputs, shuffle_spans
from ..memory_guard import require_memory
from .argtypes import non_negative_int, positive_int

# symbolic ids for the printed tokens (only their names matter here)
CLS, MASK, SOP, EOP, GMASK, TEXT = -1, -2, -3, -4, -5, 0
NAMES = {CLS: "[CLS]", MASK: "[M]", SOP: "[S]", EOP: "[E]", GMASK: "[gMASK]"}


@dataclass
class Layout:
    title: str
    tokens: list[str]
    targets: list[str] | None
    position: list[int]
    block: list[int]
    mask: torch.Tensor  # [L, L] bool
    sep: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=["glm", "chatglm"], help="glm: blank infilling; chatglm: ChatGLM-6B prefix LM")
    parser.add_argument("--length", type=positive_int, help="glm: number of text tokens x1..xn")
    parser.add_argument("--spans", default="", help="glm: spans start:end (0-based, end excluded), comma-separated, in Part-B order")
    parser.add_argument("--cls", action="store_true", help="glm: prepend [CLS] as real pretraining samples do")
    parser.add_argument("--shuffle", type=non_negative_int, metavar="SEED", help="glm: shuffle the Part-B order with this seed")
    parser.add_argument("--prompt-length", type=non_negative_int, help="chatglm: prompt tokens p1..pm before [gMASK] <sop>")
    parser.add_argument("--generated", type=non_negative_int, default=0, help="chatglm: generated tokens g1..gk after <sop>")
    parser.add_argument("--png", type=Path, metavar="FILE", help="also draw the mask into a PNG file (matplotlib)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--force", action="store_true", help="run even if the memory it needs looks larger than the memory available (default: refuse)")


def parse_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            start, end = (int(v) for v in part.split(":"))
        except ValueError:
            raise ValueError(f"--spans: {part!r} is not start:end (e.g. 2:3,4:6)") from None
        spans.append((start, end))
    return spans


GRID_BYTES = {"text": 12, "json": 48, "png": 40}
"""Bytes per mask cell: the bool mask, its int copy and the text grid; a Python int per cell in JSON;
matplotlib's float image and RGBA buffer for the PNG."""


def require_grid_memory(length: int, args: argparse.Namespace) -> None:
    per_cell = max(GRID_BYTES["text"], GRID_BYTES["json"] if args.json else 0, GRID_BYTES["png"] if args.png else 0)
    require_memory(length * length * per_cell, f"a {length} x {length} mask", force=args.force)


def glm_layout(args: argparse.Namespace) -> Layout:
    if args.length is None or args.length < 1:
        raise ValueError("--length: required for glm, the number of text tokens (>= 1)")
    spans = parse_spans(args.spans)
    require_grid_memory(args.length + 1 + 2 * len(spans), args)
    if args.shuffle is not None:
        spans = shuffle_spans(spans, torch.Generator().manual_seed(args.shuffle))
    names = {**NAMES, **{TEXT + i + 1: f"x{i + 1}" for i in range(args.length)}}
    tokens = [TEXT + i + 1 for i in range(args.length)]
    offset = 0
    if args.cls:
        tokens, offset = [CLS, *tokens], 1
    try:
        s = blank_infilling(tokens, [(a + offset, b + offset) for a, b in spans], mask_id=MASK, sop_id=SOP, eop_id=EOP)
    except ValueError as err:
        raise ValueError(f"--spans: {err} (spans count x1..x{args.length} from 0)") from None
    shown = ", ".join(f"[{a},{b})" for a, b in spans) or "none"
    return Layout(
        title=f"GLM blank infilling: x1..x{args.length}{' after [CLS]' if args.cls else ''}, spans {shown} "
        f"in Part-B order; sep = {s.sep}",
        tokens=[names[int(t)] for t in s.input_ids],
        targets=["-"] * s.sep + [names[int(t)] for t in s.targets[s.sep :]],
        position=s.position_ids[0].tolist(),
        block=s.position_ids[1].tolist(),
        mask=s.attention_mask,
        sep=s.sep,
    )


def chatglm_layout(args: argparse.Namespace) -> Layout:
    if args.prompt_length is None or args.prompt_length < 0 or args.generated < 0:
        raise ValueError("--prompt-length: required for chatglm (>= 0); --generated must be >= 0")
    require_grid_memory(args.prompt_length + 2 + args.generated, args)
    prompt = [f"p{i + 1}" for i in range(args.prompt_length)]
    generated = [f"g{i + 1}" for i in range(args.generated)]
    names = [*prompt, "[gMASK]", "<sop>", *generated]
    ids = torch.tensor([TEXT] * len(prompt) + [GMASK, SOP] + [TEXT] * len(generated))
    out = prefix_lm_inputs(ids, gmask_id=GMASK, mask_id=MASK, sop_id=SOP)
    return Layout(
        title=f"ChatGLM-6B prefix LM: prompt of {len(prompt)}, [gMASK] <sop>, {len(generated)} generated; "
        f"context length {int(out.context_length)}, mask position {int(out.mask_position)}",
        tokens=names,
        targets=None,
        position=out.position_ids[0].tolist(),
        block=out.position_ids[1].tolist(),
        mask=out.attention_mask,
        sep=int(out.context_length),
    )


def render(layout: Layout) -> str:
    n = len(layout.tokens)
    rows = [("idx", [str(i) for i in range(n)]), ("token", layout.tokens)]
    if layout.targets is not None:
        rows.append(("target", layout.targets))
    rows += [("position", [str(v) for v in layout.position]), ("block", [str(v) for v in layout.block])]
    widths = [max(len(r[1][i]) for r in rows) for i in range(n)]
    lines = [layout.title, ""]
    for label, cells in rows:
        lines.append(f"{label:<9}" + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    lines += [
        "",
        "attention mask (row = query, column = key, 1 = may attend):",
        f"keys 0..{layout.sep - 1} are seen by every query (bidirectional part), later keys causally (k <= q)",
    ]
    index_width = len(str(n - 1))
    name_width = max(len(t) for t in layout.tokens)
    pad = " " * (index_width + name_width + 2)
    if n > 10:  # column numbers written vertically: tens above units
        lines.append(pad + " ".join(str(k // 10) if k >= 10 else " " for k in range(n)).rstrip())
    lines.append(pad + " ".join(str(k % 10) for k in range(n)))
    for q, token in enumerate(layout.tokens):
        cells = " ".join("1" if v else "0" for v in layout.mask[q].tolist())
        lines.append(f"{q:>{index_width}} {token:<{name_width}} {cells}")
    return "\n".join(lines)


def draw_png(layout: Layout, path: Path) -> None:
    """Write the mask grid as a PNG (temp file in the same folder, then renamed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--png needs matplotlib; install it with: pip install 'archzoo[plot]'") from None
    n = len(layout.tokens)
    labels = [f"{t} ({p},{b})" for t, p, b in zip(layout.tokens, layout.position, layout.block)]
    fig, ax = plt.subplots(figsize=(2 + 0.45 * n, 1.5 + 0.45 * n))
    ax.imshow(layout.mask.numpy(), cmap="Blues", vmin=0, vmax=1.4)
    ax.set_xticks(range(n), labels, rotation=90)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("key (token, position, block)")
    ax.set_ylabel("query")
    ax.axvline(layout.sep - 0.5, color="black", lw=1)
    ax.axhline(layout.sep - 0.5, color="black", lw=1)
    ax.set_title(layout.title, fontsize=8, wrap=True)
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:  # the user's umask, whole or not at all
            fig.savefig(tmp, format="png", dpi=120)
    except OSError as err:
        raise ValueError(f"--png: cannot write {path}: {err.strerror or err}") from None
    finally:
        plt.close(fig)


def run(args: argparse.Namespace) -> int:
    try:
        layout = glm_layout(args) if args.kind == "glm" else chatglm_layout(args)
        if args.png is not None:
            draw_png(layout, args.png)
    except (ValueError, RuntimeError) as err:
        print(f"archzoo mask: {err}", file=sys.stderr)
        return 2
    if args.json:
        data = {k: v for k, v in vars(layout).items() if k != "mask"}
        data["mask"] = layout.mask.int().tolist()
        print(json.dumps(data))
    else:
        print(render(layout))
    if args.png is not None:
        print(f"\nwrote {args.png}")
    return 0
