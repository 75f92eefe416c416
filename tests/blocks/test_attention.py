"""Attention against a hand-written softmax(q k^T * s + B) v in float64 (Vaswani et al. 2017;
GQA, Ainslie et al. 2023; MQA, Shazeer 2019; qk-norm as in Qwen3)."""

from __future__ import annotations

import pytest
import torch

from archzoo.blocks.alibi import Alibi
from archzoo.blocks.attention import Attention, AttentionContext
from archzoo.blocks.cache import LayerCache
from archzoo.blocks.masks import build_mask
from archzoo.blocks.rope import RotaryEmbedding

NEG_INF = float("-inf")


def randomise(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)


def proj(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    y = x @ layer.weight.T
    return y + layer.bias if layer.bias is not None else y


def rms_per_head(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps) * weight


def reference_attention(
    attn: Attention,
    x: torch.Tensor,
    allowed: torch.Tensor,
    bias: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Loop over heads: head j reads kv head j // (H / G). ``allowed`` ``[batch, q, kv]`` bool,
    ``bias`` ``[heads, q, kv]``. Everything in the dtype of ``x`` (float64 in these tests)."""
    batch, seq, _ = x.shape
    H, G, d = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = proj(attn.q_proj, x).view(batch, seq, H, d)
    k = proj(attn.k_proj, x).view(batch, seq, G, d)
    v = proj(attn.v_proj, x).view(batch, seq, G, d)
    if attn.q_norm is not None:
        q, k = rms_per_head(q, attn.q_norm.weight, eps), rms_per_head(k, attn.k_norm.weight, eps)
    heads = []
    for j in range(H):
        g = j // (H // G)
        scores = q[:, :, j] @ k[:, :, g].transpose(-1, -2) * attn.scale
        if bias is not None:
            scores = scores + bias[j]
        scores = scores.masked_fill(~allowed, NEG_INF)
        heads.append(scores.softmax(-1) @ v[:, :, g])
    return proj(attn.o_proj, torch.cat(heads, dim=-1))


def causal(batch: int, seq: int) -> torch.Tensor:
    return torch.ones(seq, seq, dtype=torch.bool).tril().expand(batch, seq, seq)


def make(d_model=24, n_heads=4, n_kv_heads=4, head_dim=6, seed=0, **options) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(d_model, n_heads, n_kv_heads, head_dim, **options).double()
    randomise(attn)
    return attn


# Tolerances in this file: the blocks run in float64 (eps_64 = 2.2e-16) against float64 references;
# their sums have at most 24 terms of size <= ~10, so n eps |x| < 1e-13: 1e-10 (1e-12 where the two
# sides are the same kernels on the same numbers) is far below any real error (O(|x|)).
@pytest.mark.parametrize(("n_heads", "n_kv_heads"), [(4, 4), (4, 2), (4, 1), (6, 3)], ids=["mha", "gqa", "mqa", "gqa6"])
@pytest.mark.parametrize("biases", [False, True])
def test_causal_attention_equals_reference(n_heads, n_kv_heads, biases):
    attn = make(n_heads=n_heads, n_kv_heads=n_kv_heads, qkv_bias=biases, o_bias=biases)
    x = torch.randn(2, 7, 24, dtype=torch.float64)
    out = attn(x, AttentionContext(mask=build_mask(7, 0, None)))
    torch.testing.assert_close(out, reference_attention(attn, x, causal(2, 7)), rtol=1e-10, atol=1e-10)


def test_mqa_equals_mha_with_copied_kv_heads():
    mqa = make(n_heads=4, n_kv_heads=1)
    mha = make(n_heads=4, n_kv_heads=4, seed=1)
    with torch.no_grad():
        mha.q_proj.weight.copy_(mqa.q_proj.weight)
        mha.o_proj.weight.copy_(mqa.o_proj.weight)
        mha.k_proj.weight.copy_(mqa.k_proj.weight.repeat(4, 1))
        mha.v_proj.weight.copy_(mqa.v_proj.weight.repeat(4, 1))
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    ctx = AttentionContext(mask=build_mask(5, 0, None))
    torch.testing.assert_close(mqa(x, ctx), mha(x, ctx), rtol=1e-12, atol=1e-12)


def test_gqa_groups_are_contiguous_query_heads():
    """With 4 query heads over 2 kv heads, heads 0-1 read kv head 0 and heads 2-3 kv head 1:
    zeroing kv head 1's values silences exactly the output columns of heads 2 and 3."""
    attn = make(n_heads=4, n_kv_heads=2)
    with torch.no_grad():
        attn.v_proj.weight[6:].zero_()
        attn.o_proj.weight.copy_(torch.eye(24, dtype=torch.float64))
    x = torch.randn(1, 5, 24, dtype=torch.float64)
    out = attn(x, AttentionContext(mask=build_mask(5, 0, None)))
    assert torch.equal(out[..., 12:], torch.zeros_like(out[..., 12:]))
    assert (out[..., :12].abs() > 0).all()


def test_qk_norm_normalises_each_head_before_rope():
    attn = make(n_heads=4, n_kv_heads=2, qk_norm=True)
    seen = {}
    attn.q_norm.register_forward_hook(lambda m, args, out: seen.setdefault("q", out))
    attn.k_norm.register_forward_hook(lambda m, args, out: seen.setdefault("k", out))
    x = torch.randn(2, 5, 24, dtype=torch.float64)
    rotation = RotaryEmbedding(6)(torch.arange(5)[None], torch.float64)
    out = attn(x, AttentionContext(mask=build_mask(5, 0, None), rotation=rotation))
    for name, norm in (("q", attn.q_norm), ("k", attn.k_norm)):
        per_head = seen[name] / norm.weight  # [batch, seq, heads, head_dim]
        rms = per_head.pow(2).mean(-1).sqrt()
        # not 1 exactly: rms = sqrt(ms / (ms + eps)) = 1 - eps / (2 ms), eps = 1e-6, head mean squares ms >~ 0.1
        torch.testing.assert_close(rms, torch.ones_like(rms), rtol=0, atol=1e-6 / (2 * 0.1))
    # without rope, the whole block equals the reference with per-head RMSNorm
    plain = attn(x, AttentionContext(mask=build_mask(5, 0, None)))
    torch.testing.assert_close(plain, reference_attention(attn, x, causal(2, 5)), rtol=1e-10, atol=1e-10)
    assert not torch.allclose(out, plain)  # RoPE moves outputs by O(|x|)


def test_head_dim_independent_of_d_model():
    attn = make(d_model=32, n_heads=4, n_kv_heads=2, head_dim=12)  # 4 * 12 != 32
    assert attn.q_proj.weight.shape == (48, 32) and attn.o_proj.weight.shape == (32, 48)
    assert attn.scale == 12**-0.5
    x = torch.randn(2, 6, 32, dtype=torch.float64)
    out = attn(x, AttentionContext(mask=build_mask(6, 0, None)))
    torch.testing.assert_close(out, reference_attention(attn, x, causal(2, 6)), rtol=1e-10, atol=1e-10)


def test_explicit_softmax_scale():
    attn = make(n_heads=4, n_kv_heads=2, softmax_scale=0.05)
    assert attn.scale == 0.05
    x = torch.randn(1, 4, 24, dtype=torch.float64)
    out = attn(x, AttentionContext(mask=build_mask(4, 0, None)))
    torch.testing.assert_close(out, reference_attention(attn, x, causal(1, 4)), rtol=1e-10, atol=1e-10)


def test_padding_mask():
    """Left padding in row 0, right padding in row 1: rows of real queries match the reference."""
    attn = make(n_heads=4, n_kv_heads=2)
    x = torch.randn(2, 6, 24, dtype=torch.float64)
    keep = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    out = attn(x, AttentionContext(mask=build_mask(6, 0, keep)))
    allowed = causal(2, 6) & keep.bool()[:, None, :]
    expected = reference_attention(attn, x, allowed)
    real = keep.bool()
    torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-10)
    assert not torch.isnan(out).any()


def test_explicit_boolean_mask_prefix_lm():
    """A prefix-LM matrix: key k visible iff k < prefix or k <= q (bidirectional prefix)."""
    attn = make(n_heads=4, n_kv_heads=4)
    x = torch.randn(2, 6, 24, dtype=torch.float64)
    prefix = torch.tensor([3, 1])
    q_idx, k_idx = torch.arange(6)[:, None], torch.arange(6)[None, :]
    allowed = (k_idx < prefix[:, None, None]) | (k_idx <= q_idx)
    out = attn(x, AttentionContext(mask=build_mask(6, 0, allowed)))
    torch.testing.assert_close(out, reference_attention(attn, x, allowed), rtol=1e-10, atol=1e-10)
    # and it is not the causal answer: the prefix sees forward within itself
    assert not torch.allclose(out, reference_attention(attn, x, causal(2, 6)))  # by O(|x|)


@pytest.mark.parametrize("padded", [False, True])
def test_alibi_bias_with_mask(padded):
    attn = make(n_heads=6, n_kv_heads=6, d_model=36)
    x = torch.randn(2, 5, 36, dtype=torch.float64)
    bias = Alibi(6).bias(5, 5, 0).double()
    keep = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]) if padded else None
    out = attn(x, AttentionContext(mask=build_mask(5, 0, keep, bias=bias)))
    allowed = causal(2, 5) if keep is None else causal(2, 5) & keep.bool()[:, None, :]
    expected = reference_attention(attn, x, allowed, bias=bias)
    real = torch.ones(2, 5, dtype=torch.bool) if keep is None else keep.bool()
    torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-10)
    assert not torch.isnan(out).any()


def test_decoding_with_cache_equals_full_forward():
    attn = make(n_heads=4, n_kv_heads=2)
    rope = RotaryEmbedding(6)
    x = torch.randn(2, 7, 24, dtype=torch.float64)

    def ctx(seq: int, past: int) -> AttentionContext:
        rotation = rope(torch.arange(past, past + seq)[None], torch.float64)
        return AttentionContext(mask=build_mask(seq, past, None), rotation=rotation, past=past)

    full = attn(x, ctx(7, 0))
    cache = LayerCache(max_len=8)
    steps = [attn(x[:, :4], ctx(4, 0), cache)]  # prompt of 4, then one token at a time
    for t in range(4, 7):
        steps.append(attn(x[:, t : t + 1], ctx(1, t), cache))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="max_len"):
        attn(x[:, :2], ctx(2, 7), cache)


def test_rejects_kv_heads_not_dividing_heads():
    with pytest.raises(ValueError, match="n_kv_heads"):
        Attention(24, 4, 3, 6)


def test_kv_head_sharing_fallback_equals_sdpa_gqa(monkeypatch):
    """torch 2.4 has no SDPA ``enable_gqa``; the repeat fallback must give the same result."""
    from archzoo.blocks import attention
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 6, 5, 8), torch.randn(2, 2, 5, 8), torch.randn(2, 2, 5, 8)
    spec = AttentionContext(mask=build_mask(5, 0, None))
    shared = attention.attend(q, k, v, spec, 0.3)
    monkeypatch.setattr(attention, "SDPA_SHARES_KV_HEADS", False)
    repeated = attention.attend(q, k, v, spec, 0.3)
    # the same products; SDPA may block shared and repeated heads differently: sums of 5 slots x 8
    # dims of |x| <= ~4 in float32 give at most 40 * 4 * eps_32 = 2e-5
    assert torch.allclose(shared, repeated, rtol=0, atol=40 * 4 * torch.finfo(torch.float32).eps)
