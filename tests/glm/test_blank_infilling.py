"""GLM blank-infilling samples against the worked examples of docs/glm.md (§1.4, §1.5,
§1.6), written out by hand, and properties over random span sets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archzoo.glm import (
    blank_infilling,
    collapsed_positions,
    shuffle_spans,
    trailing_generation,
)

# token ids for the worked examples
CLS, M, S, E, GMASK = 1, 100, 101, 102, 103
X = {i: 10 + i for i in range(1, 8)}  # x1..x7
NAMES = {CLS: "CLS", M: "[M]", S: "[S]", E: "[E]", GMASK: "[gMASK]", **{v: f"x{k}" for k, v in X.items()}}


def names(ids: torch.Tensor) -> list[str]:
    return [NAMES[int(i)] for i in ids]


def grid(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row.replace(" ", "")] for row in rows])


def build(tokens, spans):
    return blank_infilling(tokens, spans, mask_id=M, sop_id=S, eop_id=E)


WITH_CLS = [CLS] + [X[i] for i in range(1, 7)]
NO_CLS = [X[i] for i in range(1, 7)]

# §1.4(a): the mask grid, row = query, column = key
GRID_CLS = grid(
    [
        "1 1 1 1 1 1 0 0 0 0 0",
        "1 1 1 1 1 1 0 0 0 0 0",
        "1 1 1 1 1 1 0 0 0 0 0",
        "1 1 1 1 1 1 0 0 0 0 0",
        "1 1 1 1 1 1 0 0 0 0 0",
        "1 1 1 1 1 1 0 0 0 0 0",
        "1 1 1 1 1 1 1 0 0 0 0",
        "1 1 1 1 1 1 1 1 0 0 0",
        "1 1 1 1 1 1 1 1 1 0 0",
        "1 1 1 1 1 1 1 1 1 1 0",
        "1 1 1 1 1 1 1 1 1 1 1",
    ]
)
# §1.4(b)
GRID_NO_CLS = grid(["1111100000"] * 5 + ["1111110000", "1111111000", "1111111100", "1111111110", "1111111111"])


def test_paper_example_with_cls_x5x6_first():
    s = build(WITH_CLS, [(5, 7), (3, 4)])
    assert s.sep == 6
    assert names(s.input_ids) == "CLS x1 x2 [M] x4 [M] [S] x5 x6 [S] x3".split()
    assert names(s.targets) == "CLS x1 x2 [M] x4 [M] x5 x6 [E] x3 [E]".split()
    assert s.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 5, 5, 5, 3, 3], [0, 0, 0, 0, 0, 0, 1, 2, 3, 1, 2]]
    assert s.loss_mask.tolist() == [0] * 6 + [1] * 5
    assert torch.equal(s.attention_mask, GRID_CLS)


def test_paper_example_with_cls_x3_first():
    s = build(WITH_CLS, [(3, 4), (5, 7)])
    assert names(s.input_ids) == "CLS x1 x2 [M] x4 [M] [S] x3 [S] x5 x6".split()
    assert names(s.targets)[6:] == "x3 [E] x5 x6 [E]".split()
    assert s.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 3, 3, 5, 5, 5], [0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 3]]
    # the mask depends only on sep and length: identical for both orders
    assert torch.equal(s.attention_mask, GRID_CLS)


def test_paper_example_without_cls_both_orders():
    s = build(NO_CLS, [(2, 3), (4, 6)])
    assert s.sep == 5
    assert names(s.input_ids) == "x1 x2 [M] x4 [M] [S] x3 [S] x5 x6".split()
    assert names(s.targets)[5:] == "x3 [E] x5 x6 [E]".split()
    assert s.position_ids.tolist() == [[0, 1, 2, 3, 4, 2, 2, 4, 4, 4], [0, 0, 0, 0, 0, 1, 2, 1, 2, 3]]
    assert torch.equal(s.attention_mask, GRID_NO_CLS)

    s = build(NO_CLS, [(4, 6), (2, 3)])
    assert names(s.input_ids) == "x1 x2 [M] x4 [M] [S] x5 x6 [S] x3".split()
    assert names(s.targets)[5:] == "x5 x6 [E] x3 [E]".split()
    assert s.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 4, 4, 2, 2], [0, 0, 0, 0, 0, 1, 2, 3, 1, 2]]
    assert torch.equal(s.attention_mask, GRID_NO_CLS)


def test_seed_text_claims_that_are_off():
    """The seed text says x1 -> [1,0], x3 -> [3,0], x5 -> [5,0], x6 -> [5,1] (§1.5)."""
    s = build(WITH_CLS, [(3, 4), (5, 7)])
    ids, pos = s.input_ids.tolist(), s.position_ids.T.tolist()
    # x1 -> [1, 0] only because [CLS] holds position 0 ...
    assert pos[ids.index(X[1])] == [1, 0]
    # ... on raw text x1 is [0, 0]
    raw = build(NO_CLS, [(2, 3), (4, 6)])
    assert raw.position_ids.T.tolist()[raw.input_ids.tolist().index(X[1])] == [0, 0]
    # [3, 0] is the [MASK] that replaced x3, not x3; x3 is absent from Part A
    assert ids[3] == M and pos[3] == [3, 0]
    assert X[3] not in ids[: s.sep]
    # x3 as an input sits at [3, 2], after its [S] at [3, 1]; it is predicted at the [S] slot
    i3 = ids.index(X[3])
    assert ids[i3 - 1] == S and pos[i3 - 1] == [3, 1] and pos[i3] == [3, 2]
    assert s.targets[i3 - 1] == X[3]
    # x5, x6 are [5, 2], [5, 3] (block 0 is Part A only; [S] holds [5, 1])
    assert pos[ids.index(X[5])] == [5, 2] and pos[ids.index(X[6])] == [5, 3]
    assert (s.position_ids[1, s.sep :] > 0).all()


def test_generation_objective_example():
    """§1.6: n = 8 ([CLS] x1..x7), g = 4."""
    s = trailing_generation([CLS] + [X[i] for i in range(1, 8)], 4, gmask_id=GMASK, sop_id=S)
    assert names(s.input_ids) == "CLS x1 x2 x3 [gMASK] [S] x4 x5 x6".split()
    assert names(s.targets) == "CLS x1 x2 x3 [gMASK] x4 x5 x6 x7".split()
    assert s.position_ids.tolist() == [[0, 1, 2, 3, 4, 4, 4, 4, 4], [0, 0, 0, 0, 0, 1, 2, 3, 4]]
    assert s.sep == 5
    with pytest.raises(ValueError, match="generation_length"):
        trailing_generation([1, 2], 2, gmask_id=GMASK, sop_id=S)


def test_adjacent_spans_get_consecutive_mask_positions():
    # t0 [t1] [t2 t3] t4: two masks side by side at positions 1 and 2
    s = build([20, 21, 22, 23, 24], [(2, 4), (1, 2)])
    assert s.input_ids.tolist() == [20, M, M, 24, S, 22, 23, S, 21]
    assert s.position_ids.tolist() == [[0, 1, 2, 3, 2, 2, 2, 1, 1], [0, 0, 0, 0, 1, 2, 3, 1, 2]]


def test_per_span_mask_tokens_and_errors():
    s = blank_infilling([20, 21, 22, 23], [(3, 4), (1, 2)], mask_id=[GMASK, M], sop_id=S, eop_id=E)
    assert s.input_ids[: s.sep].tolist() == [20, M, 22, GMASK]
    with pytest.raises(ValueError, match="overlap"):
        build([1, 2, 3, 4], [(0, 2), (1, 3)])
    with pytest.raises(ValueError, match=r"spans\[1\]"):
        build([1, 2, 3], [(0, 1), (2, 4)])
    with pytest.raises(ValueError, match="one per span"):
        blank_infilling([1, 2, 3], [(0, 1)], mask_id=[M, M], sop_id=S, eop_id=E)


def test_shuffle_spans_is_a_random_permutation_and_never_sorts_in_the_builder():
    spans = [(1, 2), (3, 5), (6, 7), (8, 10)]
    orders = {tuple(shuffle_spans(spans, torch.Generator().manual_seed(seed))) for seed in range(20)}
    assert all(sorted(o) == spans for o in orders)
    assert len(orders) > 5
    again = shuffle_spans(spans, torch.Generator().manual_seed(3))
    assert again == shuffle_spans(spans, torch.Generator().manual_seed(3))
    reverse = build(list(range(20, 31)), spans[::-1])
    assert reverse.input_ids[reverse.sep :].tolist()[:3] == [S, 28, 29]


# ---- properties over random span sets --------------------------------------------------


@st.composite
def text_and_spans(draw):
    n = draw(st.integers(1, 30))
    cuts = sorted(draw(st.sets(st.integers(0, n), min_size=2, max_size=12)))
    pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2]) if a < b]
    spans = draw(st.permutations(pairs)) if pairs else []
    return n, list(spans)


@settings(max_examples=25, deadline=None)
@given(text_and_spans())
def test_properties(case):
    n, spans = case
    text = list(range(200, 200 + n))
    s = build(text, spans)
    lengths = [e - b for b, e in spans]
    assert s.sep == n - sum(lengths) + len(spans)
    L = s.sep + sum(k + 1 for k in lengths)
    assert s.input_ids.shape == s.targets.shape == s.loss_mask.shape == (L,)
    assert s.position_ids.shape == (2, L) and s.attention_mask.shape == (L, L)

    # mask rule: k < sep or k <= q, checked cell by cell
    for q in range(L):
        for k in range(L):
            assert bool(s.attention_mask[q, k]) == (k < s.sep or k <= q)

    # Part A: the text in order with each span as one mask; positions 0..sep-1, block 0
    inside = {i for b, e in spans for i in range(b, e)}
    starts = {b for b, _ in spans}
    expected_a = [M if i in starts else t for i, t in enumerate(text) if i not in inside or i in starts]
    assert s.input_ids[: s.sep].tolist() == expected_a
    assert s.position_ids[0, : s.sep].tolist() == list(range(s.sep))
    assert (s.position_ids[1, : s.sep] == 0).all() and (s.loss_mask[: s.sep] == 0).all()

    # Part B: spans in the given order, positions = their mask's index in Part A
    at = s.sep
    for b, e in spans:
        mask_index = b - sum(e2 - b2 - 1 for b2, e2 in spans if e2 <= b)
        assert s.input_ids[mask_index] == M
        seg = slice(at, at + e - b + 1)
        assert s.input_ids[seg].tolist() == [S, *text[b:e]]
        assert s.targets[seg].tolist() == [*text[b:e], E]
        assert s.input_ids[seg][1:].tolist() == s.targets[seg][:-1].tolist()  # aligned, no shift
        assert (s.position_ids[0, seg] == mask_index).all()
        assert s.position_ids[1, seg].tolist() == list(range(1, e - b + 2))
        assert (s.loss_mask[seg] == 1).all()
        at += e - b + 1
    assert at == L
    assert collapsed_positions(n, spans)[-1] == s.sep - 1
