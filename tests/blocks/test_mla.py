"""Multi-head latent attention: the absorbed form equals the naive form, both
equal the paper's per-head equations, the absorbed cache holds r + d_R numbers
per token, and cached decoding equals one full forward in both modes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import archzoo
import tolerances as tol
from archzoo.blocks.attention import AttentionContext
from archzoo.blocks.cache import KVCache
from archzoo.blocks.masks import build_mask
from archzoo.blocks.mla import MultiHeadLatentAttention, set_mla_mode
from archzoo.blocks.rope import RotaryEmbedding
from archzoo.models.builders import build_mla

D_MODEL, HEADS, RANK, NOPE, ROPE, V = 48, 4, 24, 12, 8, 10


def make_mla(q_lora_rank: int, seed: int = 0) -> MultiHeadLatentAttention:
    torch.manual_seed(seed)
    mla = MultiHeadLatentAttention(
        D_MODEL, HEADS, kv_lora_rank=RANK, qk_nope_head_dim=NOPE, qk_rope_head_dim=ROPE,
        v_head_dim=V, q_lora_rank=q_lora_rank,
    )  # fmt: skip
    with torch.no_grad():
        for p in mla.parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 1.0) + (1.0 if p.dim() == 1 else 0.0))
    return mla


def context(seq: int, past: int = 0, batch: int = 2) -> AttentionContext:
    rope = RotaryEmbedding(ROPE, layout="interleaved")
    positions = torch.arange(past, past + seq)[None].expand(batch, -1)
    return AttentionContext(mask=build_mask(seq, past, None), rotation=rope(positions), past=past)


def per_head_reference(mla: MultiHeadLatentAttention, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
    """DeepSeek-V2 eqs. (9)-(19) written out: decompress every head, explicit softmax."""
    batch, seq, _ = x.shape
    if hasattr(mla, "q_proj"):
        q = mla.q_proj(x)
    else:
        q = mla.q_b_proj(mla.q_a_layernorm(mla.q_a_proj(x)))
    q = q.view(batch, seq, HEADS, NOPE + ROPE)
    kv = mla.kv_a_proj(x)
    c = mla.kv_a_layernorm(kv[..., :RANK])
    k_rope = ctx.rotation.apply(kv[..., RANK:][:, None])[:, 0]  # [b, s, d_R], one for all heads
    w = mla.kv_b_proj.weight.view(HEADS, NOPE + V, RANK)
    heads = []
    for j in range(HEADS):
        k_j = torch.cat((c @ w[j, :NOPE].T, k_rope), dim=-1)  # [b, s, d_n + d_R]
        v_j = c @ w[j, NOPE:].T
        q_rope_j = ctx.rotation.apply(q[:, :, j, NOPE:][:, None])[:, 0]
        q_j = torch.cat((q[:, :, j, :NOPE], q_rope_j), dim=-1)
        scores = q_j @ k_j.transpose(1, 2) / math.sqrt(NOPE + ROPE)
        causal = torch.ones(seq, seq, dtype=torch.bool).tril()
        heads.append(scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v_j)
    return mla.o_proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("q_lora_rank", [0, 16])
@pytest.mark.parametrize("mode", ["naive", "absorbed"])
def test_both_modes_match_the_per_head_equations(q_lora_rank, mode):
    mla = make_mla(q_lora_rank)
    mla.mla_mode = mode
    x = torch.randn(2, 7, D_MODEL)
    ctx = context(7)
    # float32 both, other orders (absorbed: q.(W_uk c) as (q W_uk).c): sums no wider than 64 terms here
    expected = per_head_reference(mla, x, ctx)
    torch.testing.assert_close(mla(x, ctx), expected, rtol=0, atol=tol.fp32_forward(64, expected))


@pytest.mark.parametrize("q_lora_rank", [0, 16])
def test_absorbed_equals_naive_with_the_same_weights(q_lora_rank):
    mla = make_mla(q_lora_rank, seed=1)
    x = torch.randn(3, 11, D_MODEL)
    ctx = context(11, batch=3)
    mla.mla_mode = "naive"
    naive = mla(x, ctx)
    mla.mla_mode = "absorbed"
    absorbed = mla(x, ctx)
    assert (naive - absorbed).abs().max() < 1e-5
    assert naive.abs().max() > 0.1  # not trivially zero


def test_query_path_follows_q_lora_rank():
    with_lora, without = make_mla(16), make_mla(0)
    assert {"q_a_proj.weight", "q_a_layernorm.weight", "q_b_proj.weight"} <= set(dict(with_lora.named_parameters()))
    assert "q_proj.weight" not in dict(with_lora.named_parameters())
    assert "q_proj.weight" in dict(without.named_parameters())
    assert "q_a_proj.weight" not in dict(without.named_parameters())


def tiny_mla_model(name: str, mode: str) -> archzoo.CausalLM:
    cfg = archzoo.load_config(name)
    cfg = cfg.replace(
        attention=dataclasses.replace(cfg.attention, mla_mode=mode),
        model=dataclasses.replace(cfg.model, init_std=0.1),
    )
    torch.manual_seed(0)
    return archzoo.build_model(cfg).eval()


@pytest.mark.parametrize("name", ["deepseek-tiny", "deepseek-v2-tiny"])
def test_model_logits_agree_across_modes(name):
    model = tiny_mla_model(name, "naive")
    ids = torch.randint(0, model.config.model.vocab_size, (2, 13))
    naive = model(ids)
    assert set_mla_mode(model, "absorbed") == model.config.model.n_layers
    absorbed = model(ids)
    assert (naive - absorbed).abs().max() < 1e-5


@pytest.mark.parametrize("name", ["deepseek-tiny", "deepseek-v2-tiny"])
def test_absorbed_cache_holds_latent_plus_rope_key_per_token(name):
    model = tiny_mla_model(name, "absorbed")
    a = model.config.attention
    cache = model.new_cache(32)
    model(torch.randint(0, 100, (3, 5)), cache=cache)
    for layer in cache.layers:
        assert layer.values_per_token() == a.kv_lora_rank + a.qk_rope_head_dim
    assert model.layers[0].attn.kv_values_per_token() == a.kv_lora_rank + a.qk_rope_head_dim
    # float32: 4 bytes per number, 3 sequences, every layer
    stored = sum(b.numel() * b.element_size() for layer in cache.layers for b in layer.buffers.values())
    assert stored // cache.max_len == 4 * 3 * model.config.model.n_layers * (a.kv_lora_rank + a.qk_rope_head_dim)


def test_naive_cache_holds_decompressed_keys_and_values():
    model = tiny_mla_model("deepseek-tiny", "naive")
    a = model.config.attention
    cache = model.new_cache(16)
    model(torch.randint(0, 100, (1, 4)), cache=cache)
    expected = a.n_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim)
    assert all(layer.values_per_token() == expected for layer in cache.layers)
    assert model.layers[0].attn.kv_values_per_token() == expected


@pytest.mark.parametrize("mode", ["naive", "absorbed"])
@pytest.mark.parametrize("name", ["deepseek-tiny", "deepseek-v2-tiny"])
def test_cached_decoding_equals_full_forward(name, mode):
    model = tiny_mla_model(name, mode)
    ids = torch.randint(0, model.config.model.vocab_size, (2, 9))
    full = model(ids)
    cache = KVCache(model.config.model.n_layers, 16)
    steps = [model(ids[:, :4], cache=cache)]
    for t in range(4, 9):
        steps.append(model(ids[:, t : t + 1], cache=cache))
    # cached steps against one forward: the same sums in other blockings (tests/models/test_cache.py: 128 terms)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=tol.fp32_forward(128, full))


def test_switching_mode_on_a_filled_cache_is_an_error():
    model = tiny_mla_model("deepseek-tiny", "absorbed")
    cache = model.new_cache(8)
    model(torch.randint(0, 100, (1, 3)), cache=cache)
    set_mla_mode(model, "naive")
    with pytest.raises(ValueError, match="other mode"):
        model(torch.randint(0, 100, (1, 1)), cache=cache)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="mla_mode"):
        make_mla(0).mla_mode = "compressed"


def test_yarn_softmax_scale_matches_deepseek_formula():
    # DeepSeek-V3: 1/sqrt(128 + 64) * (0.1 * mscale_all_dim * ln(factor) + 1)^2, factor 40, mscale_all_dim 1
    cfg = archzoo.load_config("deepseek-v3")
    with torch.device("meta"):
        mla = build_mla(cfg)
    assert mla.scale == pytest.approx(192**-0.5 * (0.1 * math.log(40) + 1) ** 2, rel=1e-12)
    tiny = archzoo.load_config("deepseek-v2-tiny")  # no rope scaling: plain 1/sqrt(d_n + d_R)
    assert build_mla(tiny).scale == pytest.approx((16 + 8) ** -0.5)
