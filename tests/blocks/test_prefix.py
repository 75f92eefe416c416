"""P-tuning v2 prefixes: the model against a forward written from the equations, the KV cache,
activation checkpointing, gradients, GQA sizing, saving and loading, refusals."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.errors import InputError
from archzoo.models.hf.family import UnsupportedConfig

# float32 logits of O(1) from sums over d_model = 128 and hidden = 352 terms, computed in a
# different order than the reference: ~352 * 1.2e-7 * |x| < 1e-4; observed ~1e-6
TOLERANCE = 2e-5


def _prefixed_llama(length: int = 4, projection=False, seed: int = 0):
    torch.manual_seed(seed)
    model = archzoo.build_model("llama-tiny").eval()
    archzoo.add_prefix(model, length=length, projection=projection)
    with torch.no_grad():  # N(0, 1) keys would swamp the scores of this tiny model; any values will do
        for param in model.prefix.parameters():
            param.mul_(0.3)
    return model


def reference_logits(model, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """LLaMA written out (Touvron et al. 2023) with P-tuning v2's prefix: each layer's keys and
    values are [prefix ; sequence], every query sees all P prefix slots, its own and earlier
    real tokens; the sequence takes positions P, P + 1, ... (half-layout RoPE)."""
    cfg = model.config
    heads, kv_heads, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    batch, seq = ids.shape
    length = model.prefix.length
    table = model.prefix.table().view(length, cfg.model.n_layers, 2, kv_heads, d)
    w = {k: v.detach() for k, v in model.state_dict().items()}

    def rms(x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.norm.eps) * weight

    positions = torch.arange(length, length + seq, dtype=torch.float64)
    inv_freq = cfg.position.theta ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.cat([positions[:, None] * inv_freq] * 2, dim=-1)
    cos, sin = angles.cos().float(), angles.sin().float()

    def rope(x):  # x [b, h, s, d]
        half = torch.cat((-x[..., d // 2 :], x[..., : d // 2]), dim=-1)
        return x * cos + half * sin

    slot = torch.arange(length + seq)
    query_slot = torch.arange(length, length + seq)
    allowed = (slot[None, :] <= query_slot[:, None])[None, None]  # [1, 1, s, P + s]
    key_real = torch.cat((torch.ones(batch, length, dtype=torch.bool), keep.bool()), dim=1)
    allowed = allowed & key_real[:, None, None, :]
    h = w["embed.weight"][ids]
    for i in range(cfg.model.n_layers):
        p = f"layers.{i}."
        x = rms(h, w[p + "attn_norm.weight"])
        q = (x @ w[p + "attn.q_proj.weight"].T).view(batch, seq, heads, d).transpose(1, 2)
        k = (x @ w[p + "attn.k_proj.weight"].T).view(batch, seq, kv_heads, d).transpose(1, 2)
        v = (x @ w[p + "attn.v_proj.weight"].T).view(batch, seq, kv_heads, d).transpose(1, 2)
        q, k = rope(q), rope(k)
        prefix_k = table[:, i, 0].permute(1, 0, 2).expand(batch, -1, -1, -1)  # [b, G, P, d]
        prefix_v = table[:, i, 1].permute(1, 0, 2).expand(batch, -1, -1, -1)
        k = torch.cat((prefix_k, k), dim=2).repeat_interleave(heads // kv_heads, dim=1)
        v = torch.cat((prefix_v, v), dim=2).repeat_interleave(heads // kv_heads, dim=1)
        scores = (q @ k.transpose(-1, -2)) / d**0.5
        attn = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
        h = h + attn.transpose(1, 2).reshape(batch, seq, -1) @ w[p + "attn.o_proj.weight"].T
        x = rms(h, w[p + "mlp_norm.weight"])
        gate, up = x @ w[p + "mlp.gate_proj.weight"].T, x @ w[p + "mlp.up_proj.weight"].T
        h = h + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    return rms(h, w["final_norm.weight"]) @ w["lm_head.weight"].T


@pytest.mark.parametrize("projection", [False, True])
def test_prefix_model_is_the_equations(projection):
    model = _prefixed_llama(projection=projection)
    ids = torch.randint(0, 512, (2, 9), generator=torch.Generator().manual_seed(1))
    keep = torch.ones(2, 9, dtype=torch.long)
    keep[1, :3] = 0  # left padding: padded keys hidden, the prefix never
    with torch.no_grad():
        got = model(ids, attention_mask=keep)
        expected = reference_logits(model, ids, keep)
        plain = archzoo.build_model("llama-tiny")
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prefix.")})
        without = plain(ids, attention_mask=keep)
    real = keep.bool()
    assert (got - expected)[real].abs().max() < TOLERANCE
    assert (got - without)[real].abs().max() > 1e-2  # the prefix matters, so the comparison can fail


def test_cached_decoding_equals_the_full_forward():
    model = _prefixed_llama()
    ids = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(10)
        steps = [model(ids[:, :4], cache=cache)]  # a prompt of 4 (the prefix fills slots 0..3 first)
        steps += [model(ids[:, t : t + 1], cache=cache) for t in range(4, 10)]
    assert cache.length == 4 + 10
    # the same sums, split at other points (one query at a time vs all): float32 rounding only
    assert (torch.cat(steps, dim=1) - full).abs().max() < TOLERANCE


def test_generate_continues_after_the_prefix():
    model = _prefixed_llama()
    prompt = torch.tensor([[5, 6, 7]])
    new = archzoo.generate(model, prompt, 5)
    tokens = prompt
    with torch.no_grad():
        for _ in range(5):  # greedy by hand, one full forward per token, no cache
            tokens = torch.cat((tokens, model(tokens)[:, -1:].argmax(-1)), dim=1)
    assert torch.equal(new, tokens[:, 3:])


def test_bloom_alibi_prefix_with_and_without_cache():
    torch.manual_seed(0)
    model = archzoo.build_model("bloom-tiny").eval()
    archzoo.add_prefix(model, length=3)
    ids = torch.randint(0, model.config.model.vocab_size, (1, 6))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache(6)
        steps = torch.cat([model(ids[:, t : t + 1], cache=cache) for t in range(6)], dim=1)
    assert (steps - full).abs().max() < TOLERANCE


def test_only_the_prefix_gets_gradients_and_checkpointing_gives_the_same_ones():
    ids = torch.randint(0, 512, (2, 8), generator=torch.Generator().manual_seed(3))
    grads = []
    for checkpointing in (False, True):
        model = _prefixed_llama(projection=True).train()
        model.activation_checkpointing = checkpointing
        model(ids).logsumexp(-1).mean().backward()
        with_grad = sorted(n for n, p in model.named_parameters() if p.grad is not None)
        assert with_grad == sorted(n for n, _ in model.named_parameters() if n.startswith("prefix."))
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for name, grad in grads[0].items():
        assert grad.abs().sum() > 0
        # the recomputation repeats the same float32 operations in the same order
        assert torch.equal(grads[1][name], grad), name


def test_prefix_is_sized_by_the_kv_heads():
    model = _prefixed_llama(length=5)
    cfg = model.config
    assert cfg.n_kv_heads < cfg.n_heads  # llama-tiny is GQA
    key, value = model.prefix.key_values(batch=3)[1]
    assert key.shape == value.shape == (3, cfg.n_kv_heads, 5, cfg.head_dim)
    assert model.prefix.table().shape == (5, cfg.model.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim)


def test_save_and_load_keep_the_prefix(tmp_path):
    model = _prefixed_llama(projection=16)
    archzoo.save_adapter(model, tmp_path / "prefix")
    fresh = archzoo.build_model("llama-tiny").eval()
    fresh.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("prefix.")})
    archzoo.load_adapter(fresh, tmp_path / "prefix")
    assert fresh.prefix.projection_hidden == 16  # the projection itself came back, so training can go on
    ids = torch.randint(0, 512, (1, 6))
    with torch.no_grad():
        assert torch.equal(fresh(ids), model(ids))
    assert [n for n, p in fresh.named_parameters() if p.requires_grad] == [n for n, _ in fresh.prefix.named_parameters(prefix="prefix")]


def test_refusals():
    with pytest.raises(UnsupportedConfig, match="multi-head latent attention"):
        archzoo.add_prefix(archzoo.build_model("deepseek-v2-tiny", device="meta"))
    model = archzoo.build_model("llama-tiny", device="meta")
    with pytest.raises(InputError, match="length"):
        archzoo.add_prefix(model, length=0)
    archzoo.add_prefix(model, length=2)
    with pytest.raises(InputError, match="already has a prefix"):
        archzoo.add_prefix(model)
