# %% [markdown]
# # 03 · Positions
#
# **What you will learn**
#
# - RoPE as a rotation: each pair of query/key dims turns by the angle m·ω_i at position m, and so
#   q_m · k_n depends only on m - n (checked numerically, to float rounding whose size we work out);
# - the layouts real checkpoints use: `half` and `interleaved` pairs (the same rotation after a permutation)
#   and partial RoPE (ChatGLM2 rotates half of each head, the rest passes through);
# - ALiBi: no rotation, a per-head penalty linear in distance; the slope rule for 8 heads, for BLOOM-176B's
#   112 heads and Baichuan-13B's 40, and the bias it adds;
# - GLM's 2D positions: two rotations, one per half of each head;
# - long-context scaling: how Llama 3.1 and YaRN (DeepSeek-V3) change the frequencies, plotted against the
#   original ones.
#
# **Read beside it**
#
# - `src/archzoo/blocks/rope.py`: the rotation, both layouts, partial rotation
# - `src/archzoo/blocks/alibi.py`: slopes and bias
# - `src/archzoo/blocks/rope_2d.py`: GLM's 2D RoPE
# - `src/archzoo/blocks/rope_scaling.py`: linear, llama3 and YaRN frequency scaling
# - `configs/llama/llama3.1-405b.toml`, `configs/deepseek/deepseek-v3.toml`: the scaling sections

# %%
import json
import math

import matplotlib.pyplot as plt
import torch

import archzoo
from archzoo.blocks.alibi import Alibi, alibi_slopes
from archzoo.blocks.rope import RotaryEmbedding, inverse_frequencies
from archzoo.blocks.rope_2d import GLM2DRotaryEmbedding
from archzoo.blocks.rope_scaling import yarn_mscale, yarn_softmax_factor

torch.manual_seed(0)
results = {}
EPS32 = torch.finfo(torch.float32).eps  # 1.19e-7: the spacing of float32 numbers near 1

# %% [markdown]
# ## 1. RoPE is a rotation
#
# Over r rotated dims, pair i (of r/2 pairs) turns at the angular speed ω_i = θ^(-2i/r) radians per token:
# pair 0 by 1 radian per token, the last pair about θ times slower. A query at position m is the vector
# turned by m·ω_i in every pair. Below: one 2D pair of a query at positions 0..7, for a fast and a slow pair
# of a 64-dim head (θ = 10000).

# %%
rope = RotaryEmbedding(64, theta=10000.0, layout="half")
omega = rope.inv_freq
x = torch.zeros(1, 1, 8, 64)
x[..., 0], x[..., 32] = 1.0, 0.0  # pair 0 is (dim 0, dim 32) in the half layout
x[..., 8], x[..., 40] = 1.0, 0.0  # pair 8 is (dim 8, dim 40)
turned = rope(torch.arange(8)[None]).apply(x)[0, 0]

fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
for ax, (i, a, b) in zip(axes, [(0, 0, 32), (8, 8, 40)]):
    circle = torch.linspace(0, 2 * math.pi, 200)
    ax.plot(circle.cos(), circle.sin(), color="lightgray", label="unit circle")
    for m in range(8):
        ax.annotate("", xy=(turned[m, a], turned[m, b]), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=plt.cm.viridis(m / 7)))
        ax.text(1.12 * turned[m, a], 1.12 * turned[m, b], str(m), ha="center", va="center", fontsize=8)
    ax.plot([], [], color=plt.cm.viridis(0.5), label="query at position m (label)")
    ax.set_aspect("equal")
    ax.set_xlim(-1.35, 1.35)
    ax.set_ylim(-1.35, 1.35)
    ax.set_xlabel(f"dim {a} (first of pair {i})")
    ax.set_ylabel(f"dim {b} (its partner)")
    ax.set_title(f"pair {i}: ω = {omega[i]:.3g} rad/token")
    ax.legend(loc="lower left", fontsize=8)
fig.suptitle("RoPE turns each pair of dims by m·ω radians at position m")
plt.tight_layout()
plt.show()
# the rotation keeps lengths and turns by exactly the angle m·ω (to float32 rounding of cos/sin)
angle = torch.atan2(turned[:, 40], turned[:, 8])
assert torch.allclose(angle, torch.arange(8) * omega[8], atol=4 * EPS32)
results["omega_pair0"] = omega[0].item()
results["omega_last_pair"] = omega[-1].item()

# %% [markdown]
# ### The relative-position property
#
# Rotating q by m·ω and k by n·ω leaves q·k depending on the *difference* of the angles only:
# R(m)q · R(n)k = q · R(n - m)k. So the score of a query at m and a key at n is a function of m - n.
# Check it: the score table S[m, n] for one random q and k over positions 0..255 should be constant along
# every diagonal. How constant, in float32? The angle m·ω is rounded to float32, an error of up to
# m·ω·eps/2 ≤ m·eps/2 radians (ω ≤ 1); cos and sin add about eps each; the 64-term dot product adds up to
# 64·eps relative. So |S[m, n] - S[m + s, n + s]| ≤ |q||k|·eps·(M + 4 + 64) with M = 255 the largest position.

# %%
def scores(q, k, positions, dtype=torch.float32):
    """S[m, n] = R(m) q . R(n) k for m, n in ``positions`` (one head)."""
    rot = RotaryEmbedding(q.numel(), theta=10000.0, layout="half")(positions[None], dtype)
    qm = rot.apply(q.to(dtype).expand(1, 1, len(positions), -1))[0, 0]
    kn = rot.apply(k.to(dtype).expand(1, 1, len(positions), -1))[0, 0]
    return qm @ kn.T


q, k = torch.randn(64), torch.randn(64)
M = 256
S = scores(q, k, torch.arange(M))
deviation = max((S.diagonal(offset=-d)[1:] - S.diagonal(offset=-d)[0]).abs().max().item() for d in range(-M + 2, M - 1))
bound = q.norm().item() * k.norm().item() * EPS32 * (M - 1 + 4 + 64)
print(f"largest change along a diagonal {deviation:.2e}, float32 bound {bound:.2e}, |q||k| = {q.norm() * k.norm():.1f}")
assert deviation <= bound  # a worst-case bound: the measured drift is typically far inside it
results["relative_deviation_within_bound"] = deviation <= bound

# %% [markdown]
# The error grows with the absolute position because the angle m·ω is a float32 number (archzoo computes
# angles in float32 whatever the model's dtype, as the checkpoints' own code does): float32 numbers near
# 100,000 are 2^-7 apart, so at m = 100,000 the angle of the fastest pair is off by up to 0.004 radians.
# Written out by hand in float64, the same equation gives a table constant along diagonals to ~1e-12: the
# property is exact, the drift is the arithmetic.

# %%
def scores_by_hand(q, k, positions):
    """The equation in float64: pair (i, i + r/2) turned by m·ω_i."""
    half = q.numel() // 2
    w = omega.double()
    ang = positions.double()[:, None] * w[None, :]  # [positions, r/2]
    cos, sin = ang.cos(), ang.sin()

    def turn(v):
        a, b = v.double()[:half], v.double()[half:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)

    return turn(q) @ turn(k).T


S64 = scores_by_hand(q, k, torch.arange(M))
deviation64 = max((S64.diagonal(offset=-d)[1:] - S64.diagonal(offset=-d)[0]).abs().max().item() for d in range(-M + 2, M - 1))
print(f"float64 by hand: largest change along a diagonal {deviation64:.1e}; max |float32 - float64| {(S - S64).abs().max():.1e}")
# float64 eps 2.2e-16 in the same bound: |q||k|·2.2e-16·(255 + 4 + 64) < 1e-11
assert deviation64 < 1e-11
assert (S.double() - S64).abs().max() <= bound  # archzoo's float32 table is the equation, to float32 rounding

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
im = axes[0].imshow(S, cmap="RdBu_r")
axes[0].set_xlabel("key position n (tokens)")
axes[0].set_ylabel("query position m (tokens)")
axes[0].set_title("score R(m)q · R(n)k: constant along diagonals")
fig.colorbar(im, ax=axes[0], label="score (q·k units)")
rel = torch.arange(-(M - 1), M)
axes[1].plot(rel, [S.diagonal(offset=-d)[0].item() for d in rel], label="S along each diagonal (m - n fixed)")
axes[1].set_xlabel("relative position m - n (tokens)")
axes[1].set_ylabel("score (q·k units)")
axes[1].set_title("the score is a function of m - n alone")
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. Layouts: half, interleaved, partial
#
# Which two dims form a pair is a checkpoint convention. `half` (GPT-NeoX, Hugging Face LLaMA and Qwen) pairs
# dim i with i + r/2; `interleaved` (Meta's original LLaMA, ChatGLM2, DeepSeek's MLA) pairs 2i with 2i + 1.
# They are the same rotation after a fixed permutation of the dims, which is why archzoo keeps the layout as
# a config field and never permutes weights. ChatGLM2 also rotates only the first r = head_dim / 2 dims
# (`rotary_fraction = 0.5`); the other half carries no position at all.

# %%
chatglm2 = archzoo.load_config("chatglm2-tiny")
head, r = chatglm2.head_dim, chatglm2.rotary_dim
print(f"chatglm2-tiny: head_dim {head}, rotary_dim {r}, layout {chatglm2.position.layout}")
pos = torch.arange(16)[None]
x = torch.randn(1, 1, 16, head)
half = RotaryEmbedding(r, layout="half")(pos).apply(x)
inter = RotaryEmbedding(r, layout="interleaved")(pos).apply(x)
# interleaved pair (2i, 2i+1) <-> half pair (i, i + r/2): permute, rotate in the other layout, permute back
perm = torch.cat([torch.arange(0, r, 2), torch.arange(1, r, 2), torch.arange(r, head)])
inverse = torch.argsort(perm)
assert torch.equal(inter, RotaryEmbedding(r, layout="half")(pos).apply(x[..., perm])[..., inverse])
assert torch.equal(half[..., r:], x[..., r:]) and torch.equal(inter[..., r:], x[..., r:])  # pass-through
results["interleaved_equals_permuted_half"] = True
results["chatglm2_rotary_dim"] = r

w = RotaryEmbedding(r).inv_freq
speed = {
    "half (dim i pairs i + r/2)": torch.cat([w, w, torch.zeros(head - r)]),
    "interleaved (2i pairs 2i + 1)": torch.cat([w.repeat_interleave(2), torch.zeros(head - r)]),
}
fig, ax = plt.subplots(figsize=(9, 3.2))
for (name, s), marker in zip(speed.items(), ("o", "x")):
    ax.plot(range(head), s.masked_fill(s == 0, float("nan")), marker, label=name)
ax.axvspan(r - 0.5, head - 0.5, color="lightgray", label="not rotated (rotary_fraction 0.5)")
ax.set_yscale("log")
ax.set_xlabel("dim of the head")
ax.set_ylabel("rotation speed ω (rad/token)")
ax.set_title(f"chatglm2-tiny: which dims turn how fast (head_dim {head}, rotary_dim {r})")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 3. ALiBi: a penalty linear in distance
#
# BLOOM and Baichuan-13B add no position to q or k. Instead head h adds m_h·(n - m) ≤ 0 to the score of
# query m and key n, so far keys are damped, each head with its own slope. For n heads a power of two the
# slopes are m_h = 2^(-8h/n), h = 1..n: with 8 heads, 1/2, 1/4, ..., 1/256. Other head counts take the n' =
# 2^floor(log2 n) slopes of n' heads, then every other slope of 2n' heads until there are n. Below, the rule
# written out independently (in float64) against `alibi_slopes`.

# %%
def slopes_by_hand(n):
    base = 2 ** math.floor(math.log2(n))
    first = [2 ** (-8 * h / base) for h in range(1, base + 1)]
    extra = [2 ** (-8 * h / (2 * base)) for h in range(1, 2 * base + 1)][0::2][: n - base]
    return first + extra


s8 = alibi_slopes(8)
assert s8[0].item() == 0.5 and s8[-1].item() == 1 / 256  # powers of two: exact in float32
bloom, baichuan = archzoo.load_config("bloom-176b"), archzoo.load_config("baichuan-13b")
for cfg in (bloom, baichuan):
    got, want = alibi_slopes(cfg.n_heads), torch.tensor(slopes_by_hand(cfg.n_heads), dtype=torch.float64)
    assert torch.allclose(got.double(), want, rtol=EPS32, atol=0)  # float32 rounding of each slope
    print(f"{cfg.name}: {cfg.n_heads} heads, slopes {got[0]:.4f} .. {got[cfg.n_heads // 2]:.4f} .. {got[-1]:.2e}")
results["alibi_8_head1"] = s8[0].item()
results["alibi_8_head8"] = s8[-1].item()
results["bloom176b_heads"] = bloom.n_heads
results["bloom176b_head1"] = alibi_slopes(112)[0].item()  # 2^(-8/64)
results["bloom176b_head65"] = alibi_slopes(112)[64].item()  # 2^(-8/128): the first of the 48 interleaved
results["baichuan13b_head40"] = alibi_slopes(40)[-1].item()
assert math.isclose(results["bloom176b_head1"], 2 ** (-1 / 8), rel_tol=EPS32)
assert math.isclose(results["bloom176b_head65"], 2 ** (-1 / 16), rel_tol=EPS32)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for cfg, marker in ((bloom, "."), (baichuan, "x")):
    n = cfg.n_heads
    base = 2 ** math.floor(math.log2(n))
    axes[0].semilogy(range(1, n + 1), alibi_slopes(n), marker, label=f"{cfg.name} ({n} heads: {base} + {n - base})")
axes[0].semilogy(range(1, 9), s8, "o", mfc="none", label="8 heads: 1/2 ... 1/256")
axes[0].set_xlabel("head h")
axes[0].set_ylabel("slope m_h (score per token of distance)")
axes[0].set_title("ALiBi slopes: a geometric sequence, interleaved past a power of two")
axes[0].legend(fontsize=8)
bias = Alibi(8).bias(12, 12, 0)
causal = torch.ones(12, 12).tril().bool()
im = axes[1].imshow(bias[0].masked_fill(~causal, float("nan")), cmap="viridis")
axes[1].set_xlabel("key position n (tokens)")
axes[1].set_ylabel("query position m (tokens)")
axes[1].set_title("bias of head 1 of 8 (slope 1/2), causal part")
fig.colorbar(im, ax=axes[1], label="added to the score (logit units)")
plt.tight_layout()
plt.show()
assert bias[0, 11, 0].item() == -0.5 * 11  # m_1 · (n - m) = 1/2 · (0 - 11)

# %% [markdown]
# ## 4. GLM's 2D positions
#
# ChatGLM-6B cuts each head in two halves: the first half is rotated by the position in the text, the second
# by the position inside a blank (notebook 02 built those two rows). Each half keeps the relative property
# on its own, so the score depends on (Δ position, Δ block). Block position 0, all of Part A, leaves the
# second half untouched.

# %%
glm = archzoo.load_config("glm-tiny")
rope2d = GLM2DRotaryEmbedding(glm.head_dim, theta=glm.position.theta, fp16_frequencies=glm.position.fp16_frequencies)
x = torch.randn(1, 1, 5, glm.head_dim)
ids = torch.tensor([[[0, 1, 2, 3, 3], [0, 0, 0, 1, 2]]])  # Part A: 0 1 2 | a blank at position 3: blocks 1 2
out = rope2d(ids).apply(x)
h = glm.head_dim // 2
assert torch.equal(out[..., :3, h:], x[..., :3, h:])  # block 0: second half unchanged
assert not torch.equal(out[..., 3:, h:], x[..., 3:, h:])  # blocks 1, 2 rotate it
qk = torch.randn(2, glm.head_dim)


def score2d(p_q, b_q, p_k, b_k):
    rot = rope2d(torch.tensor([[[p_q, p_k], [b_q, b_k]]]))
    both = rot.apply(qk[None, None])[0, 0]
    return (both[0] @ both[1]).item()


shifted = abs(score2d(7, 2, 3, 1) - score2d(17, 5, 13, 4))  # both (Δp, Δb) = (4, 1)
# positions <= 17 with the float32 bound of section 1 (head_dim 32 terms)
assert shifted <= qk[0].norm().item() * qk[1].norm().item() * EPS32 * (17 + 4 + 32)
print(f"score change when both positions shift together: {shifted:.1e}")
results["glm_2d_shift_invariant"] = True

# %% [markdown]
# ## 5. Long context: scaling the frequencies
#
# A model trained on contexts of L tokens has never seen the slow pairs complete a turn beyond L. Two ways to
# stretch it, both as `[position.scaling]` in the config:
#
# - **Llama 3.1** (`llama3.1-405b`: factor 8, L = 8192): pairs whose wavelength 2π/ω is shorter than
#   L / high_freq_factor = 2048 tokens keep their frequency; those longer than L / low_freq_factor = 8192 are
#   slowed 8×; in between, a smooth blend.
# - **YaRN** (`deepseek-v3`: factor 40, L = 4096): a ramp over the pairs by how many turns they complete in L
#   (more than β_fast = 32: kept; fewer than β_slow = 1: slowed 40×), plus a softmax temperature.

# %%
def wavelengths(cfg):
    scaled, _ = inverse_frequencies(cfg.rotary_dim, cfg.position.theta, cfg.position.scaling)
    original, _ = inverse_frequencies(cfg.rotary_dim, cfg.position.theta)
    return 2 * math.pi / original, 2 * math.pi / scaled


llama31, dsv3 = archzoo.load_config("llama3.1-405b"), archzoo.load_config("deepseek-v3")
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
for ax, cfg in zip(axes, (llama31, dsv3)):
    s = cfg.position.scaling
    before, after = wavelengths(cfg)
    ax.semilogy(before, "o", ms=3, label=f"original (θ = {cfg.position.theta:g})")
    ax.semilogy(after, "x", ms=4, label=f"{s.kind}, factor {s.factor:g}")
    ax.axhline(s.original_max_seq_len, color="gray", ls="--", label=f"original context L = {s.original_max_seq_len}")
    ax.set_xlabel(f"pair i of {cfg.rotary_dim // 2} (rotary_dim {cfg.rotary_dim})")
    ax.set_ylabel("wavelength 2π/ω (tokens)")
    ax.set_title(f"{cfg.name}: {s.kind} scaling")
    ax.legend(fontsize=8)
axes[0].axhline(llama31.position.scaling.original_max_seq_len / 4, color="tab:green", ls=":", label="L / high_freq_factor")
axes[0].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The asserted rules: Llama 3.1 keeps every pair with wavelength under 2048 tokens exactly and slows every
# pair over 8192 by exactly 8 (a power of two: no rounding); YaRN keeps the fastest pairs and slows the
# slowest by 40 (to float32 rounding), and multiplies cos and sin by m(40) = 0.1·ln 40 + 1 in its plain form.
# DeepSeek-V3 sets mscale = mscale_all_dim = 1, so the factor on cos and sin cancels to 1 and m(40)² goes into
# the softmax scale instead.

# %%
before, after = wavelengths(llama31)
fast, slow = before < 8192 / 4, before > 8192 / 1
assert torch.equal(after[fast], before[fast]) and torch.equal(after[slow], before[slow] * 8)
before_y, after_y = wavelengths(dsv3)
ratio = after_y / before_y
assert ratio[0].item() == 1.0 and math.isclose(ratio[-1].item(), 40.0, rel_tol=4 * EPS32)
_, factor_on_cos = inverse_frequencies(dsv3.rotary_dim, dsv3.position.theta, dsv3.position.scaling)
assert factor_on_cos == 1.0
assert yarn_softmax_factor(dsv3.position.scaling) == yarn_mscale(40.0) ** 2  # into the softmax scale instead
print(f"llama3.1: {int(fast.sum())} pairs kept, {int(slow.sum())} slowed 8x, {int((~fast & ~slow).sum())} blended")
print(f"YaRN m(40) = {yarn_mscale(40.0):.4f}; slowest pair slowed {ratio[-1]:.4f}x")
results["llama31_pairs_kept"] = int(fast.sum())
results["llama31_pairs_slowed"] = int(slow.sum())
results["yarn_mscale_40"] = yarn_mscale(40.0)

# %%
print("RESULTS", json.dumps(results))
