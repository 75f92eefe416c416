"""Mask construction: causal, padding, explicit matrices and additive biases (True = may attend)."""

from __future__ import annotations

import pytest
import torch

from archzoo.blocks.attention import Attention, AttentionContext
from archzoo.blocks.masks import build_mask, causal_mask, never_empty

NEG_INF = float("-inf")


def test_causal_mask_worked_example():
    # 2 new queries after 3 cached slots: query 0 sits at slot 3, query 1 at slot 4
    expected = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 5, 3), expected)
    assert torch.equal(causal_mask(4, 4, 0), torch.ones(4, 4, dtype=torch.bool).tril())


def test_no_mask_is_the_causal_matrix():
    assert torch.equal(build_mask(5, 0, None), causal_mask(5, 5, 0)[None, None])
    # an all-ones padding mask is the same as none
    assert torch.equal(build_mask(5, 0, torch.ones(2, 5)), causal_mask(5, 5, 0)[None, None].expand(2, 1, 5, 5))


def test_one_new_token_sees_the_whole_cache():
    assert build_mask(1, 6, None).all()


def test_several_new_tokens_after_a_cache_are_causal_from_their_slot():
    assert torch.equal(build_mask(3, 4, None)[0, 0], causal_mask(3, 7, 4))


def test_padding_mask_and_causality_combine():
    keep = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]])
    mask = build_mask(4, 0, keep)
    assert mask.dtype == torch.bool
    allowed = mask[:, 0]
    for b in range(2):
        for q in range(4):
            for k in range(4):
                visible = k <= q and keep[b, k] == 1
                # a query that sees nothing (row 0, slot 0 is padding) may see its own slot
                rescued = b == 0 and q == 0 and k == 0
                assert bool(allowed[b, q, k]) == (visible or rescued), (b, q, k)


def test_padding_with_cache_covers_past_and_current_slots():
    keep = torch.tensor([[0, 1, 1, 1, 1, 1]])  # 4 cached slots + 2 new
    allowed = build_mask(2, 4, keep)[0, 0]
    expected = torch.tensor([[0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(allowed, expected)


def test_padding_mask_of_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="attention_mask.*expected past \\+ current = 6"):
        build_mask(2, 4, torch.ones(1, 5))


def test_explicit_mask_is_taken_as_given():
    allowed = torch.zeros(1, 3, 3, dtype=torch.bool)
    allowed[0, :, 0] = True  # everyone sees only slot 0, even slot 0's "future" is irrelevant
    allowed[0, 0, 2] = True  # and query 0 sees slot 2: no causality imposed
    mask = build_mask(3, 0, allowed)
    assert torch.equal(mask[:, 0], allowed)
    assert torch.equal(build_mask(3, 0, allowed[:, None]), mask)


def test_explicit_mask_of_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="attention_mask.*\\[batch, 3, 3\\]"):
        build_mask(3, 0, torch.ones(1, 3, 4, dtype=torch.bool))


def test_never_empty_only_touches_empty_rows():
    allowed = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.bool)
    fixed = never_empty(allowed, past=0)
    assert torch.equal(fixed, torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.bool))
    # with a cache, query i's own slot is past + i
    assert torch.equal(never_empty(torch.zeros(1, 4, dtype=torch.bool), past=2), torch.tensor([[0, 0, 1, 0]]).bool())


def test_bias_is_added_and_disallowed_keys_get_minus_infinity():
    bias = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 3, 3)  # [heads, q, kv]
    mask = build_mask(3, 0, None, bias=bias)
    causal = causal_mask(3, 3, 0)
    assert mask.shape == (1, 2, 3, 3)  # [batch (broadcast), heads, q, kv]
    assert torch.equal(mask[0][:, causal], bias[:, causal])
    assert (mask[0][:, ~causal] == NEG_INF).all()


def test_bias_with_padding_broadcasts_over_batch_and_never_leaves_a_row_empty():
    bias = torch.randn(2, 3, 3)
    keep = torch.tensor([[0, 1, 1], [1, 1, 1]])
    mask = build_mask(3, 0, keep, bias=bias)
    assert mask.shape == (2, 2, 3, 3)  # [batch, heads, q, kv]
    assert torch.isfinite(mask).any(-1).all()
    assert (mask[0, :, :, 0] == NEG_INF)[:, 1:].all()  # padded key hidden from real queries
    assert torch.equal(mask[1], bias.masked_fill(~causal_mask(3, 3, 0), NEG_INF))


def test_one_token_after_a_cache_gets_the_bias_unmasked():
    """A single query at the last slot may attend every key: the bias is passed on as is."""
    bias = torch.randn(2, 1, 5)
    assert torch.equal(build_mask(1, 4, None, bias=bias)[0], bias)


@pytest.mark.parametrize("kind", ["causal", "padding", "bias"])
def test_attention_block_perturbation(kind):
    """Changing the input at slot t leaves attention outputs at slots < t bit-identical."""
    torch.manual_seed(0)
    attn = Attention(16, 4, 2, 4)
    x = torch.randn(2, 6, 16)
    keep = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]) if kind == "padding" else None
    bias = torch.randn(4, 6, 6) if kind == "bias" else None
    ctx = AttentionContext(mask=build_mask(6, 0, keep, bias=bias))
    for t in range(6):
        changed = x.clone()
        changed[:, t] = torch.randn(2, 16)
        before, after = attn(x, ctx), attn(changed, ctx)
        assert torch.equal(before[:, :t], after[:, :t])
        assert not torch.allclose(before[1, t], after[1, t])  # a visible change moves outputs by O(|x|), not rounding
    if keep is not None:  # changing padded slots 0-1 of row 0 leaves its real slots 2.. unchanged
        changed = x.clone()
        changed[0, :2] = torch.randn(2, 16)
        assert torch.equal(attn(x, ctx)[0, 2:], attn(changed, ctx)[0, 2:])
