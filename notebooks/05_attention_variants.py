# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Attention variants: MHA, GQA, MQA and MLA side by side
#
# **What you will learn**
#
# - Why the KV cache, not the weights, is what grows with context, and how each attention variant
#   shrinks it: multi-head (MHA: every query head has its own K and V), grouped-query (GQA: groups of
#   query heads share one K/V head), multi-query (MQA: all share one) and DeepSeek's multi-head latent
#   attention (MLA: one small latent per token from which every head's K and V are decompressed).
# - The parameters, FLOPs per token and KV-cache bytes per token of released configs
#   (LLaMA-2-7B, LLaMA-2-70B, LLaMA-3-8B, ChatGLM2-6B, DeepSeek-V2 and -V3), read off archzoo's
#   own inspection API and checked against the textbook formulas.
# - That MLA's *absorbed* form (attend over the cached latent, with W_UK folded into the query and W_UV
#   into the output) computes the same numbers as the *naive* form (decompress K and V per head),
#   while caching 71x fewer values per token.
#
# **Read beside it**
#
# - `src/archzoo/blocks/attention.py` (MHA / GQA / MQA: one block, `n_kv_heads` decides)
# - `src/archzoo/blocks/mla.py` (MLA, naive and absorbed, with the equations)
# - `src/archzoo/blocks/cache.py` (the KV cache)
# - `src/archzoo/inspect/memory.py` and `src/archzoo/inspect/flops.py` (the numbers below)

# %%
import dataclasses
import json

import matplotlib.pyplot as plt
import torch

import archzoo
from archzoo.inspect import count_params, estimate_flops, kv_bytes_per_token, kv_values_per_token_per_layer

torch.manual_seed(0)
results: dict = {}

# %% [markdown]
# ## The configs
#
# One attention block covers MHA, GQA and MQA: `[attention] n_kv_heads` says how many K/V heads
# there are (unset = one per query head). No released config in `configs/` is pure MQA
# (n_kv_heads = 1): ChatGLM2-6B's paper calls its attention "multi-query", but its config has
# `multi_query_group_num = 2`, i.e. GQA with two K/V heads. To see MQA on equal terms we derive
# it from LLaMA-2-7B with `Config.replace` (a hypothetical variant, marked as such: the same model
# with one K/V head). DeepSeek-V2 and -V3 use MLA; their configs say `mla_mode = "absorbed"`, the
# inference form; the *naive* cache is the same config with `mla_mode = "naive"`.

# %%
def variant(cfg: archzoo.Config, name: str, **attention) -> archzoo.Config:
    """``cfg`` with some ``[attention]`` fields changed (validated again by ``Config.replace``)."""
    return cfg.replace(name=name, attention=dataclasses.replace(cfg.attention, **attention))


llama2_7b = archzoo.load_config("llama2-7b")
v3 = archzoo.load_config("deepseek-v3")
configs = {
    "llama2-7b (MHA)": llama2_7b,
    "llama2-70b (GQA 8)": archzoo.load_config("llama2-70b"),
    "llama3-8b (GQA 8)": archzoo.load_config("llama3-8b"),
    "chatglm2-6b (GQA 2)": archzoo.load_config("chatglm2-6b"),
    "llama2-7b as MQA (hypothetical)": variant(llama2_7b, "llama2-7b-mqa", n_kv_heads=1),
    "deepseek-v2 (MLA)": archzoo.load_config("deepseek-v2"),
    "deepseek-v3 (MLA, absorbed)": v3,
    "deepseek-v3 (MLA, naive cache)": variant(v3, "deepseek-v3-naive", mla_mode="naive"),
}
for label, cfg in configs.items():
    print(f"{label:34s} {cfg.blocks_summary()}")

# %% [markdown]
# ## Parameters, FLOPs and KV cache per token
#
# For each config: attention parameters per layer (`count_params(...).components["attention"]`
# over the layers), attention FLOPs per token at a 4,096-token context (`estimate_flops`: the
# projections, 2 per weight, plus the scores q·K and the weighted sum of V, 2 n_ctx (d_qk + d_v) per
# layer), and the KV cache per token (`kv_bytes_per_token`, bfloat16, all layers).

# %%
CONTEXT = 4096
rows = {}
for label, cfg in configs.items():
    report = count_params(cfg)
    flops = estimate_flops(cfg, report, CONTEXT)
    layers = cfg.model.n_layers
    attention_params = report.components["attention"]
    rows[label] = {
        "layers": layers,
        "heads": cfg.n_heads,
        "kv_heads": cfg.n_kv_heads if cfg.attention.kind == "mha" else None,
        "attn_params_per_layer": attention_params // layers,
        "attn_flops_per_token": 2 * attention_params + flops.attention_per_token,
        "projection_flops_per_token": 2 * attention_params,
        "score_flops_per_token": flops.attention_per_token,
        "kv_values_per_token_per_layer": kv_values_per_token_per_layer(cfg),
        "kv_bytes_per_token": kv_bytes_per_token(cfg, "bf16"),
        "total_params": report.total,
    }

print(f"{'':34s} {'heads':>5s} {'kv':>4s} {'attn params/layer':>18s} {'attn GFLOP/token':>17s} "
      f"{'KV values/token/layer':>22s} {'KV KiB/token':>13s}")
for label, r in rows.items():
    kv = "-" if r["kv_heads"] is None else str(r["kv_heads"])
    print(f"{label:34s} {r['heads']:5d} {kv:>4s} {r['attn_params_per_layer'] / 1e6:16.1f} M "
          f"{r['attn_flops_per_token'] / 1e9:17.3f} {r['kv_values_per_token_per_layer']:22,d} "
          f"{r['kv_bytes_per_token'] / 1024:13.1f}")

# %% [markdown]
# ### The formulas, checked
#
# For MHA/GQA/MQA a token stores one key and one value per K/V head and layer:
# **2 · n_kv_heads · head_dim** values. Its attention weights are W_Q and W_O (d × n_heads · head_dim
# each) and W_K, W_V (d × n_kv_heads · head_dim each). So MQA keeps exactly **1/n_heads** of MHA's
# cache, GQA-8 on 64 heads 1/8. MLA caches the latent c (kv_lora_rank = 512) and the shared RoPE
# key (qk_rope_head_dim = 64): **576** values; naive MLA caches every head's decompressed key and value:
# 128 · (128 + 64 + 128) = **40,960**.

# %%
for label, cfg in configs.items():
    r, d, hd = rows[label], cfg.model.d_model, cfg.head_dim
    if cfg.attention.kind == "mha":
        assert r["kv_values_per_token_per_layer"] == 2 * cfg.n_kv_heads * hd, label
        bias = 0 if not cfg.attention.qkv_bias else (cfg.n_heads + 2 * cfg.n_kv_heads) * hd
        expected = 2 * d * cfg.n_heads * hd + 2 * d * cfg.n_kv_heads * hd + bias
        assert r["attn_params_per_layer"] == expected, (label, r["attn_params_per_layer"], expected)

a = v3.attention
assert rows["deepseek-v3 (MLA, absorbed)"]["kv_values_per_token_per_layer"] == a.kv_lora_rank + a.qk_rope_head_dim == 576
assert rows["deepseek-v3 (MLA, naive cache)"]["kv_values_per_token_per_layer"] == (
    a.n_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim + a.v_head_dim)
) == 40960

mha, mqa = rows["llama2-7b (MHA)"], rows["llama2-7b as MQA (hypothetical)"]
assert mqa["kv_bytes_per_token"] * llama2_7b.n_heads == mha["kv_bytes_per_token"]  # MQA = MHA / n_heads, exactly
gqa70 = rows["llama2-70b (GQA 8)"]
assert gqa70["kv_values_per_token_per_layer"] * 64 // 8 == 2 * 64 * 128  # GQA-8 on 64 heads: 1/8 of MHA's

naive_over_absorbed = 40960 / 576
print(f"MQA keeps 1/{mha['kv_bytes_per_token'] / mqa['kv_bytes_per_token']:.0f} of MHA's cache; "
      f"naive MLA caches {naive_over_absorbed:.1f}x what absorbed MLA caches")
print(f"llama2-7b KV cache per token: {mha['kv_bytes_per_token'] / 2**20:.2f} MiB in bf16 "
      f"(the often-quoted 0.5 MB/token)")
results.update({
    "llama2_7b_kv_bytes_per_token": int(mha["kv_bytes_per_token"]),
    "llama2_7b_mqa_kv_bytes_per_token": int(mqa["kv_bytes_per_token"]),
    "llama2_70b_kv_bytes_per_token": int(gqa70["kv_bytes_per_token"]),
    "deepseek_v3_kv_bytes_per_token_absorbed": int(rows["deepseek-v3 (MLA, absorbed)"]["kv_bytes_per_token"]),
    "deepseek_v3_kv_bytes_per_token_naive": int(rows["deepseek-v3 (MLA, naive cache)"]["kv_bytes_per_token"]),
    "deepseek_v3_attn_params_per_layer": rows["deepseek-v3 (MLA, absorbed)"]["attn_params_per_layer"],
    "llama2_7b_attn_flops_per_token_4k": rows["llama2-7b (MHA)"]["attn_flops_per_token"],
})

# %% [markdown]
# ## The cache against context length
#
# The cache of one sequence is `seq_len × kv_bytes_per_token`: a straight line in context length,
# with a slope set by the attention variant. The dashed lines are the bfloat16 weights of two of the
# models: past the crossing, a single sequence's cache outweighs the whole model.

# %%
lengths = [2**k for k in range(10, 18)]  # 1K .. 128K tokens
fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 5))
for (label, r), marker in zip(rows.items(), "os^vDxP*"):
    style = "--" if "hypothetical" in label or "naive" in label else "-"
    ax.plot(lengths, [n * r["kv_bytes_per_token"] / 2**30 for n in lengths], style, marker=marker, ms=4, label=label)
for label, colour in (("llama2-7b (MHA)", "grey"), ("llama2-70b (GQA 8)", "black")):
    weights = rows[label]["total_params"] * 2 / 2**30
    ax.axhline(weights, color=colour, ls=":", lw=1)
    ax.text(lengths[-1], weights * 1.1, f"{label.split(' ')[0]} weights (bf16)", fontsize=8, color=colour, ha="right")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("context length (tokens, log scale)")
ax.set_ylabel("KV cache of one sequence (GiB, bf16, log scale)")
ax.set_title("KV cache against context length")
ax.legend(fontsize=7, loc="upper left")
ax.grid(True, which="both", alpha=0.3)

labels = list(rows)
bx.barh(labels, [rows[k]["kv_values_per_token_per_layer"] for k in labels], color="tab:blue")
bx.set_xscale("log")
bx.set_xlabel("cached values per token per layer (count, log scale)")
bx.set_title("What one token leaves in one layer's cache")
bx.invert_yaxis()
for i, k in enumerate(labels):
    bx.text(rows[k]["kv_values_per_token_per_layer"] * 1.05, i, f"{rows[k]['kv_values_per_token_per_layer']:,}",
            va="center", fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ### Where the attention FLOPs go
#
# Sharing K/V heads shrinks the cache and a little of the projection work, but not the scores:
# every *query* head still takes its own dot products with every cached key, so the score FLOPs
# (2 n_ctx (d_qk + d_v) per layer) are the same for MHA, GQA and MQA at equal query heads. MLA is
# counted in its decompressed (training) form; its 128 heads of 192 + 128 make the scores cost more.

# %%
fig, ax = plt.subplots(figsize=(9, 4.5))
proj = [rows[k]["projection_flops_per_token"] / 1e9 for k in labels]
score = [rows[k]["score_flops_per_token"] / 1e9 for k in labels]
ax.barh(labels, proj, color="tab:green", label="projections (2 x attention weights)")
ax.barh(labels, score, left=proj, color="tab:red", label=f"scores q.K and p.V at {CONTEXT:,} tokens")
ax.invert_yaxis()
ax.set_xlabel(f"attention FLOPs per token, all layers (GFLOP, context {CONTEXT:,})")
ax.set_title("Attention compute per generated token")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()
assert rows["llama2-7b as MQA (hypothetical)"]["score_flops_per_token"] == rows["llama2-7b (MHA)"]["score_flops_per_token"]

# %% [markdown]
# ## MLA: naive and absorbed compute the same thing
#
# Per head j, the naive form decompresses the key k_j = W_UK,j c and scores q_N,j · k_j; the
# absorbed form scores (W_UK,jᵀ q_N,j) · c. Both are the same sum of products, in a different order.
# Likewise W_O (Σ_t p_t W_UV c_t) = W_O W_UV (Σ_t p_t c_t). So with the **same weights** the two
# forms must give the same logits, up to float32 rounding. We build the tiny DeepSeek-V3-style config
# (`deepseek-tiny`: MLA with a low-rank query and YaRN RoPE) in both modes, copy the weights of one
# into the other, and compare, both in one full forward and decoding token by token with a cache.

# %%
tiny = archzoo.load_config("deepseek-tiny")
tiny_naive = variant(tiny, "deepseek-tiny-naive", mla_mode="naive")
torch.manual_seed(0)
absorbed_model = archzoo.build_model(tiny, implementation="reference").eval()
naive_model = archzoo.build_model(tiny_naive, implementation="reference").eval()
naive_model.load_state_dict(absorbed_model.state_dict())  # the same weights, tensor for tensor

ids = torch.randint(0, tiny.model.vocab_size, (2, 64), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    logits_absorbed = absorbed_model(ids)
    logits_naive = naive_model(ids)
diff = (logits_absorbed - logits_naive).abs().max().item()
scale = logits_naive.abs().max().item()
print(f"max |logit| = {scale:.3f};  max |absorbed - naive| = {diff:.2e}")

# %% [markdown]
# **The tolerance.** float32 has eps = 2⁻²³ ≈ 1.2e-7. A dot product of n terms, summed in a
# different order, moves by at most about n · eps · Σ|terms|. The longest sums on the path are over
# d_model = 64 (projections), r + d_R = 40 (absorbed scores) and 64 context positions; three such
# stages per layer, three layers and the head give a worst case of about 10 · 64 · eps ≈ 8e-5 relative
# to the logits' scale; a typical (random-walk) error is far smaller. We assert 1e-4 × max|logit|.
# For contrast, a model with *different* weights (another seed) differs by about the logits' own scale,
# so the assertion can fail.

# %%
tolerance = 1e-4 * scale
assert diff <= tolerance, (diff, tolerance)
torch.manual_seed(123)
other = archzoo.build_model(tiny_naive, implementation="reference").eval()
with torch.no_grad():
    diff_other = (other(ids) - logits_naive).abs().max().item()
assert diff_other > 100 * tolerance
print(f"absorbed vs naive: {diff:.2e} <= {tolerance:.2e};  another seed: {diff_other:.2e}")

# %% [markdown]
# ### Decoding with a cache, and what each cache holds
#
# Prefill 48 tokens, then decode the last 16 one at a time. Both modes must match the full forward
# above, and the caches they fill must hold what `kv_values_per_token_per_layer` says: the latent and
# the RoPE key (32 + 8 = 40 values) absorbed, every head's key and value (4 · (16 + 8 + 16) = 160)
# naive. The bytes are read off the cache's own tensors (float32 here: 4 bytes a value).

# %%
def decode(model, ids, prefill: int):
    cache = model.new_cache(ids.shape[1])
    with torch.no_grad():
        pieces = [model(ids[:, :prefill], cache=cache)]
        for t in range(prefill, ids.shape[1]):
            pieces.append(model(ids[:, t : t + 1], cache=cache))
    return torch.cat(pieces, dim=1), cache


def cache_bytes_per_token(cache, batch: int) -> int:
    """Bytes of every tensor the cache allocated, per token slot and sequence."""
    total = sum(t.numel() * t.element_size() for layer in cache.layers for t in layer.buffers.values())
    return total // (cache.max_len * batch)


measured = {}
for mode, model, cfg in (("absorbed", absorbed_model, tiny), ("naive", naive_model, tiny_naive)):
    logits, cache = decode(model, ids, 48)
    step_diff = (logits - logits_naive).abs().max().item()
    assert step_diff <= tolerance, (mode, step_diff)
    measured[mode] = cache_bytes_per_token(cache, ids.shape[0])
    names = sorted(cache.layers[0].buffers)
    print(f"{mode:9s} cached tensors {names}: {measured[mode]:,} bytes/token "
          f"(estimate {kv_bytes_per_token(cfg, 'fp32'):,.0f}); decode vs full forward {step_diff:.1e}")
    assert measured[mode] == kv_bytes_per_token(cfg, "fp32")

t = tiny.attention
assert measured["absorbed"] == tiny.model.n_layers * (t.kv_lora_rank + t.qk_rope_head_dim) * 4
assert measured["naive"] == tiny.model.n_layers * t.n_heads * (t.qk_nope_head_dim + t.qk_rope_head_dim + t.v_head_dim) * 4
results.update({
    "tiny_mla_cache_bytes_per_token_absorbed": measured["absorbed"],
    "tiny_mla_cache_bytes_per_token_naive": measured["naive"],
    "tiny_mla_absorbed_equals_naive": diff <= tolerance,
})

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(["naive\n(K, V per head)", "absorbed\n(latent + RoPE key)"], [measured["naive"], measured["absorbed"]],
       color=["tab:orange", "tab:blue"], label="measured (cache tensors)")
ax.scatter([0, 1], [kv_bytes_per_token(tiny_naive, "fp32"), kv_bytes_per_token(tiny, "fp32")], color="black",
           zorder=3, marker="_", s=600, label="estimate (kv_bytes_per_token)")
ax.set_ylabel("KV cache (bytes per token, float32, 3 layers)")
ax.set_title("deepseek-tiny: the same logits, two caches")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What to take away
#
# - At 4K context LLaMA-2-7B caches 2 GiB per sequence; 32 K/V heads is the whole story: with one
#   (MQA) it would be 64 MiB. GQA sits between (LLaMA-2-70B: 8 K/V heads for 64 query heads).
# - MLA caches 576 values per token and layer whatever the number of heads (DeepSeek-V3: 128): fewer
#   than LLaMA-2-70B's GQA (2,048) although it keeps a full key and value per head, because every key
#   and value is a linear function of one 512-wide latent.
# - Absorption is algebra, not approximation: the same weights give the same logits.

# %%
print("RESULTS", json.dumps(results))
