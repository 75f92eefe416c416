"""Mask semantics by perturbation on the tiny models: a token that must not be visible is changed,
and the outputs that must not see it are bit-identical; a token that must be visible moves them.

Bit-identity holds because a disallowed key's score is -inf (a boolean mask, or -inf filled into
the ALiBi bias), so its softmax weight is exactly 0 and its value adds exactly 0; and every other
operation (projections, norms, MLPs) works row by row.
"""

from __future__ import annotations

import pytest
import torch

import tolerances as tol
from archzoo import build_model
from archzoo.config.load import config_paths

TINY = [
    name for name in ("llama-tiny", "bloom-tiny", "qwen2-tiny", "qwen3-tiny", "baichuan-tiny") if name in config_paths()
]
SEQ = 10


@pytest.fixture(scope="module", params=TINY)
def model(request):
    torch.manual_seed(0)
    return build_model(request.param).eval()


def vocab(model) -> int:
    return model.config.model.vocab_size


def widest_sum(model) -> int:
    """The most terms any one sum of the forward adds: widths, the MLP's hidden, a query's SEQ key slots."""
    cfg = model.config
    return max(cfg.model.d_model, cfg.mlp_hidden, cfg.moe.expert_hidden if cfg.moe else 0, cfg.n_heads * cfg.qk_head_dim, SEQ)


def other_token(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    return (ids + 1 + torch.randint(0, vocab_size - 1, ids.shape)) % vocab_size


def test_tiny_configs_found():
    assert "llama-tiny" in TINY


@torch.no_grad()
@pytest.mark.parametrize("t", [0, 4, SEQ - 1])
def test_future_tokens_are_invisible(model, t):
    torch.manual_seed(1)
    ids = torch.randint(0, vocab(model), (2, SEQ))
    changed = ids.clone()
    changed[:, t] = other_token(ids[:, t], vocab(model))
    before, after = model(ids), model(changed)
    assert torch.equal(before[:, :t], after[:, :t])
    assert not torch.equal(before[:, t], after[:, t])
    for b in range(2):
        assert (before[b, t] - after[b, t]).abs().max() > 1e-4


def padded_batch(vocab_size: int, side: str, n_pad: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row 0 padded on ``side`` with ``n_pad`` pads, row 1 unpadded."""
    ids = torch.randint(0, vocab_size, (2, SEQ))
    keep = torch.ones(2, SEQ, dtype=torch.long)
    pads = slice(0, n_pad) if side == "left" else slice(SEQ - n_pad, SEQ)
    ids[0, pads] = pad_id
    keep[0, pads] = 0
    return ids, keep


def positions_for(keep: torch.Tensor) -> torch.Tensor:
    """Real tokens numbered 0, 1, ... in each row (the HF convention for left padding)."""
    return (keep.cumsum(-1) - 1).clamp(min=0)


@torch.no_grad()
@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_content_is_invisible(model, side):
    torch.manual_seed(2)
    ids, keep = padded_batch(vocab(model), side, 3, pad_id=0)
    other = ids.clone()
    pad = keep == 0
    other[pad] = other_token(ids[pad], vocab(model))
    position_ids = positions_for(keep)
    before = model(ids, attention_mask=keep, position_ids=position_ids)
    after = model(other, attention_mask=keep, position_ids=position_ids)
    real = keep.bool()
    assert torch.equal(before[real], after[real])
    assert torch.isfinite(before).all() and torch.isfinite(after).all()


@torch.no_grad()
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_row_equals_unpadded_sequence(model, side):
    """The real tokens of a padded row give the logits of the same tokens run alone (other shapes,
    so equal to rounding, not bit for bit)."""
    torch.manual_seed(3)
    n_pad = 4
    ids, keep = padded_batch(vocab(model), side, n_pad, pad_id=0)
    logits = model(ids, attention_mask=keep, position_ids=positions_for(keep))
    real = keep[0].bool()
    alone = model(ids[0:1, real])
    # the row alone or in a padded batch: the same sums in other blockings; the widest is the MLP hidden
    bound = tol.fp32_forward(widest_sum(model), alone)
    torch.testing.assert_close(logits[0, real], alone[0], rtol=0, atol=bound)
    # the unpadded row of the batch is unaffected by its neighbour's padding
    torch.testing.assert_close(logits[1], model(ids[1:2])[0], rtol=0, atol=bound)


@torch.no_grad()
def test_padding_mask_changes_what_real_tokens_see(model):
    """Marking a real token as padding must change the later outputs (the mask is not ignored)."""
    torch.manual_seed(4)
    ids = torch.randint(0, vocab(model), (1, SEQ))
    keep = torch.ones(1, SEQ, dtype=torch.long)
    keep[0, 2] = 0
    assert not torch.allclose(model(ids)[0, 3:], model(ids, attention_mask=keep)[0, 3:], atol=1e-4)  # moves by O(|x|)


@torch.no_grad()
def test_all_padding_rows_are_finite(model):
    """Left-padding query rows see no real key; they must not produce NaN (nor leak into real rows)."""
    keep = torch.zeros(2, SEQ, dtype=torch.long)
    keep[0, -1] = 1  # one real token at the end
    keep[1, :] = 1
    ids = torch.randint(0, vocab(model), (2, SEQ))
    out = model(ids, attention_mask=keep)
    assert torch.isfinite(out).all()


@torch.no_grad()
def test_boolean_mask_hides_what_it_says(model):
    """An explicit [batch, q, kv] mask: a key hidden from every query after it is invisible to them."""
    torch.manual_seed(5)
    hidden_key = 3
    allowed = torch.ones(SEQ, SEQ, dtype=torch.bool).tril()
    allowed[hidden_key + 1 :, hidden_key] = False
    allowed = allowed.expand(2, SEQ, SEQ)
    ids = torch.randint(0, vocab(model), (2, SEQ))
    changed = ids.clone()
    changed[:, hidden_key] = other_token(ids[:, hidden_key], vocab(model))
    before, after = model(ids, attention_mask=allowed), model(changed, attention_mask=allowed)
    assert torch.equal(before[:, hidden_key + 1 :], after[:, hidden_key + 1 :])
    assert torch.equal(before[:, :hidden_key], after[:, :hidden_key])
    assert not torch.equal(before[:, hidden_key], after[:, hidden_key])
