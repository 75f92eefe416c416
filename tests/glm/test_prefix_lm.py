"""ChatGLM-6B prefix-LM inputs against the worked example of docs/glm.md (§2.5), written out by hand."""

from __future__ import annotations

import pytest
import torch

from archzoo.glm import next_prefix_lm_positions, prefix_lm_inputs


def grid(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row.replace(" ", "")] for row in rows])


P, G = [41, 42, 43], [51, 52, 53]
SOP, GM, MK = 64, 61, 60  # <sop>, [gMASK], [MASK]


def test_prefix_lm_prompt_example():
    ids = torch.tensor(P + [GM, SOP])
    out = prefix_lm_inputs(ids, gmask_id=GM, mask_id=MK, sop_id=SOP)
    assert out.position_ids.tolist() == [[0, 1, 2, 3, 3], [0, 0, 0, 0, 1]]
    assert torch.equal(out.attention_mask, grid(["11110"] * 4 + ["11111"]))
    assert int(out.context_length) == 4 and int(out.mask_position) == 3


def test_prefix_lm_after_generation_and_incremental_steps():
    ids = torch.tensor(P + [GM, SOP] + G)
    out = prefix_lm_inputs(ids, gmask_id=GM, mask_id=MK, sop_id=SOP)
    assert out.position_ids.tolist() == [[0, 1, 2, 3, 3, 3, 3, 3], [0, 0, 0, 0, 1, 2, 3, 4]]
    rows = ["11110000"] * 4 + ["11111000", "11111100", "11111110", "11111111"]
    assert torch.equal(out.attention_mask, grid(rows))
    # step by step from the prompt: g1 -> [3, 2], g2 -> [3, 3], g3 -> [3, 4]
    pos = prefix_lm_inputs(torch.tensor(P + [GM, SOP])[None], gmask_id=GM, mask_id=MK, sop_id=SOP).position_ids
    steps = []
    for _ in G:
        nxt = next_prefix_lm_positions(pos)
        steps.append(nxt[0, :, 0].tolist())
        pos = torch.cat([pos, nxt], dim=-1)
    assert steps == [[3, 2], [3, 3], [3, 4]]
    assert torch.equal(pos[0], out.position_ids)


def test_prefix_lm_mask_position_prefers_gmask_then_first_mask():
    with_both = torch.tensor([41, MK, 42, GM, SOP])
    assert int(prefix_lm_inputs(with_both, gmask_id=GM, mask_id=MK, sop_id=SOP).mask_position) == 3
    only_mask = torch.tensor([41, MK, 42, MK, SOP, 51])
    out = prefix_lm_inputs(only_mask, gmask_id=GM, mask_id=MK, sop_id=SOP)
    assert out.position_ids.tolist() == [[0, 1, 2, 3, 1, 1], [0, 0, 0, 0, 1, 2]]


def test_prefix_lm_left_padding_and_errors():
    ids = torch.tensor([[0, 0] + P + [GM, SOP], [41, 42, 43, 44, 45, GM, SOP]])
    pad = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1] * 7])
    out = prefix_lm_inputs(ids, gmask_id=GM, mask_id=MK, sop_id=SOP, padding_mask=pad)
    assert out.position_ids[0].tolist() == [[0, 0, 0, 1, 2, 3, 3], [0, 0, 0, 0, 0, 0, 1]]
    assert out.position_ids[1].tolist() == [[0, 1, 2, 3, 4, 5, 5], [0, 0, 0, 0, 0, 0, 1]]
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[2:, 2:] = grid(["11110"] * 4 + ["11111"])
    assert torch.equal(out.attention_mask[0], expected)
    assert out.context_length.tolist() == [4, 6] and out.mask_position.tolist() == [3, 5]
    with pytest.raises(ValueError, match="no <sop>"):
        prefix_lm_inputs(torch.tensor([41, GM]), gmask_id=GM, mask_id=MK, sop_id=SOP)
    with pytest.raises(ValueError, match=r"neither \[gMASK\]"):
        prefix_lm_inputs(torch.tensor([41, SOP]), gmask_id=GM, mask_id=MK, sop_id=SOP)
