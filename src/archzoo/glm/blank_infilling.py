"""GLM autoregressive blank infilling (Du et al. 2022, "GLM: General Language Model
Pretraining with Autoregressive Blank Infilling", ACL), as THUDM/GLM's
``make_block_data`` builds its samples.

Given text t[0..n) and half-open spans [s_k, e_k) listed in Part-B order:

    pos[i]   0-based index of t[i] once every span is collapsed to one slot
             (a span's tokens all share the position of its first token)
    Part A   the text, in original order, with each span replaced by one mask
             token; positions pos of the kept tokens (= 0, 1, ..., sep - 1),
             block position 0; sep = |Part A| = n - sum(e_k - s_k) + K
    Part B   for each span, in the given order:
             inputs  [S] t[s_k] ... t[e_k - 1]
             targets t[s_k] ... t[e_k - 1] [E]        (aligned: no shift)
             position pos[s_k] (its mask token's position) for every token,
             block position 1, 2, ..., L_k + 1         ([S] = 1)
    mask     query q may attend key k  iff  k < sep  or  k <= q

so Part A is bidirectional and blind to Part B, and Part B sees all of Part A
plus itself causally, earlier spans included (in the given, usually shuffled,
order). Part-A targets are the Part-A tokens themselves under loss_mask 0.

Numbering: the code is 0-based. The paper's Fig. 2 reads as 1-based only
because real samples start with ``[CLS]`` (x1 lands on position 1). Checked
against the code, three claims often repeated about that figure are off:

* "x1 -> [1, 0]" holds only with ``[CLS]`` prepended; on raw text x1 is [0, 0].
* "x3 -> [3, 0]": x3 is not in Part A. [3, 0] (with ``[CLS]``) belongs to the
  ``[MASK]`` that replaced x3; as a Part-B input x3 is [3, 2] after its
  ``[S]`` at [3, 1], and as a target it is predicted at the ``[S]`` slot [3, 1].
* "x5 -> [5, 0], x6 -> [5, 1]" uses 0-based in-span offsets; the code gives
  [S] [5, 1], x5 [5, 2], x6 [5, 3] (block 0 is reserved for Part A).

ChatGLM-6B's prefix-LM inference layout lives in ``prefix_lm.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "BlankInfillingSample",
    "blank_infilling",
    "collapsed_positions",
    "infilling_attention_mask",
    "shuffle_spans",
    "trailing_generation",
]

Span = tuple[int, int]


@dataclass(frozen=True)
class BlankInfillingSample:
    """One GLM training sample; every tensor has length L = sep + sum(L_k + 1).

    input_ids, targets, loss_mask: ``[L]`` long (loss_mask 1 on Part B only).
    position_ids: ``[2, L]``: row 0 position, row 1 block position.
    attention_mask: ``[L, L]`` bool, True = query (row) may attend key (column).
    sep: length of Part A (the bidirectional prefix).
    """

    input_ids: torch.Tensor
    targets: torch.Tensor
    loss_mask: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    sep: int

    def batch(self) -> dict[str, torch.Tensor]:
        """Model keywords with a batch dim of 1: ``model(**sample.batch())``."""
        return {
            "input_ids": self.input_ids[None],
            "position_ids": self.position_ids[None],
            "attention_mask": self.attention_mask[None],
        }


def infilling_attention_mask(length: int, sep: int, device: torch.device | None = None) -> torch.Tensor:
    """``[length, length]`` bool: key k visible to query q iff k < sep or k <= q."""
    if not 0 <= sep <= length:
        raise ValueError(f"sep must be in [0, length={length}], got {sep}")
    q = torch.arange(length, device=device)[:, None]
    k = torch.arange(length, device=device)[None, :]
    return (k < sep) | (k <= q)


def _check_spans(spans: Sequence[Span], n: int) -> list[Span]:
    checked = []
    for index, span in enumerate(spans):
        if len(span) != 2:
            raise ValueError(f"spans[{index}] must be a (start, end) pair, got {span!r}")
        start, end = int(span[0]), int(span[1])
        if not 0 <= start < end <= n:
            raise ValueError(f"spans[{index}] = [{start}, {end}) must satisfy 0 <= start < end <= len(tokens) = {n}")
        checked.append((start, end))
    ordered = sorted(checked)
    for (s0, e0), (s1, e1) in zip(ordered, ordered[1:]):
        if s1 < e0:
            raise ValueError(f"spans must not overlap: [{s0}, {e0}) and [{s1}, {e1})")
    return checked


def collapsed_positions(n: int, spans: Sequence[Span]) -> list[int]:
    """pos[i] for i < n: a counter from -1, not advanced on non-first span tokens."""
    inside = [False] * n
    for start, end in spans:
        for i in range(start + 1, end):
            inside[i] = True
    positions, counter = [], -1
    for i in range(n):
        if not inside[i]:
            counter += 1
        positions.append(counter)
    return positions


def blank_infilling(
    tokens: Sequence[int] | torch.Tensor,
    spans: Sequence[Span],
    *,
    mask_id: int | Sequence[int],
    sop_id: int,
    eop_id: int,
) -> BlankInfillingSample:
    """Build a GLM sample from ``tokens`` and ``spans`` (half-open, in Part-B order).

    mask_id: the mask token for every span, or one per span in the given
        order (``[MASK]`` / ``[sMASK]`` / ``[gMASK]`` by objective).
    Spans may be adjacent but not overlap; they are never sorted: Part A
    keeps the text order, Part B follows ``spans`` as given.
    """
    ids = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
    n = len(ids)
    spans = _check_spans(spans, n)
    if isinstance(mask_id, int):
        mask_ids = [mask_id] * len(spans)
    else:
        mask_ids = [int(m) for m in mask_id]
        if len(mask_ids) != len(spans):
            raise ValueError(f"mask_id: got {len(mask_ids)} ids for {len(spans)} spans (one per span, or one int)")
    pos = collapsed_positions(n, spans)
    mask_at = {start: mask for (start, _), mask in zip(spans, mask_ids)}
    inside = {i for start, end in spans for i in range(start + 1, end)}

    part_a = [mask_at.get(i, ids[i]) for i in range(n) if i not in inside]
    sep = len(part_a)
    inputs, targets = list(part_a), list(part_a)
    position, block = list(range(sep)), [0] * sep
    for start, end in spans:
        piece = ids[start:end]
        inputs += [sop_id, *piece]
        targets += [*piece, eop_id]
        position += [pos[start]] * (len(piece) + 1)
        block += list(range(1, len(piece) + 2))
    return _sample(inputs, targets, position, block, sep)


def shuffle_spans(spans: Sequence[Span], generator: torch.Generator | None = None) -> list[Span]:
    """A uniformly random Part-B order (GLM's default; ``--no-shuffle-block`` keeps text order)."""
    order = torch.randperm(len(spans), generator=generator).tolist()
    return [tuple(spans[i]) for i in order]


def trailing_generation(
    tokens: Sequence[int] | torch.Tensor,
    generation_length: int,
    *,
    gmask_id: int,
    sop_id: int,
) -> BlankInfillingSample:
    """GLM's "gpt" objective, suffix branch: the last g tokens become one ``[gMASK]`` span.

    With d = n - g: inputs t[0..d) [gMASK] [S] t[d..n-1); targets
    t[0..d) [gMASK] t[d..n) (no [E]: the text simply ends); positions 0..d then
    d repeated; block 0 up to [gMASK], then 1..g; sep = d + 1.
    """
    ids = [int(t) for t in (tokens.tolist() if isinstance(tokens, torch.Tensor) else tokens)]
    n, g = len(ids), int(generation_length)
    if not 1 <= g < n:
        raise ValueError(f"generation_length must be in [1, len(tokens) - 1 = {n - 1}], got {g}")
    d = n - g
    inputs = ids[:d] + [gmask_id, sop_id] + ids[d : n - 1]
    targets = ids[:d] + [gmask_id] + ids[d:]
    position = list(range(d + 1)) + [d] * g
    block = [0] * (d + 1) + list(range(1, g + 1))
    return _sample(inputs, targets, position, block, sep=d + 1)


def _sample(inputs: list[int], targets: list[int], position: list[int], block: list[int], sep: int) -> BlankInfillingSample:
    """Tensors of a sample: the loss covers Part B (from ``sep`` on); the mask is the GLM rule."""
    length = len(inputs)
    return BlankInfillingSample(
        input_ids=torch.tensor(inputs, dtype=torch.long),
        targets=torch.tensor(targets, dtype=torch.long),
        loss_mask=torch.tensor([0] * sep + [1] * (length - sep), dtype=torch.long),
        position_ids=torch.tensor([position, block], dtype=torch.long),
        attention_mask=infilling_attention_mask(length, sep),
        sep=sep,
    )
