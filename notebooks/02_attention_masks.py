# %% [markdown]
# # 02 · Attention masks
#
# **What you will learn**
#
# - the four masks of this zoo, drawn as grids (row = query, column = key, filled = may attend): causal (GPT,
#   LLaMA), padding (a left-padded batch), ChatGLM-6B's prefix LM (`prompt [gMASK] <sop>` bidirectional,
#   the answer causal) and GLM's blank infilling (Part A bidirectional, Part B causal, with 2D positions);
# - that a mask is a promise you can test from outside: change a token a query must not see and that
#   query's output stays the same *to the last bit*; change one it sees and it moves. Doing this for every
#   token of a sequence measures an "influence grid" that equals the mask;
# - when the plain causal mask can be left to SDPA's kernel (`is_causal`), and what that saves on long sequences.
#
# **Read beside it**
#
# - `src/archzoo/blocks/masks.py`: causal and padding masks, and what SDPA is given
# - `src/archzoo/glm/blank_infilling.py`: GLM's Part A / Part B samples and their mask
# - `src/archzoo/glm/prefix_lm.py`: ChatGLM-6B's prefix-LM positions and mask
# - `src/archzoo/blocks/rope_2d.py`: the 2D positions GLM's model reads
# - `src/archzoo/fast/attention.py`: when SDPA is told `is_causal` instead of given the grid
# - `docs/glm.md`: the worked examples (the paper's Fig. 2) the GLM tests check

# %%
import json
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.patches import Patch

import archzoo
from archzoo.blocks.masks import build_mask, causal_mask
from archzoo.glm import blank_infilling, infilling_attention_mask, prefix_lm_inputs

torch.manual_seed(0)
results = {}


def draw(ax, allowed, title, labels=None, split=None):
    """A [query, key] boolean grid; ``split`` draws the Part A | Part B boundary."""
    allowed = allowed.to(torch.int)
    ax.imshow(allowed, cmap="Blues", vmin=0, vmax=1.3)
    n = allowed.shape[-1]
    ax.set_xticks(range(n), labels or range(n), rotation=90 if labels else 0, fontsize=8)
    ax.set_yticks(range(allowed.shape[0]), labels or range(allowed.shape[0]), fontsize=8)
    ax.set_xlabel("key (token index)")
    ax.set_ylabel("query (token index)")
    ax.set_title(title, fontsize=10)
    if split is not None:
        for f in (ax.axvline, ax.axhline):
            f(split - 0.5, color="tab:red", lw=1.5)


def swatches(filled, empty):
    return [Patch(facecolor=plt.cm.Blues(1 / 1.3), label=filled), Patch(facecolor=plt.cm.Blues(0.0), edgecolor="gray", label=empty)]


legend = swatches("may attend", "masked")

# %% [markdown]
# ## 1. The masks as grids
#
# - **Causal**: query i sees keys 0..i (`causal_mask`).
# - **Padding**: a batch row shorter than the others is *left*-padded (so every row's last token is where
#   generation continues); pads are hidden from every real query. A pad query would see nothing, and softmax
#   over nothing is NaN, so it may see itself; its output belongs to padding and is never read.
# - **Prefix LM (ChatGLM-6B)**: prompt `p1 p2 p3 [gMASK] <sop>` then the answer. Query q may see key k iff
#   k < c or k <= q, with c the index of `<sop>`: the prompt is bidirectional, the answer causal.
# - **Blank infilling (GLM)**: the paper's Fig. 2. Text `[CLS] x1 .. x6` with spans {x3} and {x5 x6}: Part A
#   is the text with each span replaced by `[M]`, Part B the spans, each after a start token `[S]`. The rule
#   is the prefix-LM rule with the boundary at sep = |Part A|.

# %%
cfg_glm = archzoo.load_config("glm-tiny")
tk = cfg_glm.tokens
padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1]])  # two pads on the left
pad_grid = build_mask(8, 0, padding)[0, 0]  # [query, key]; the mask SDPA is given

prompt = torch.tensor([11, 12, 13, tk.gmask_id, tk.sop_id, 21, 22, 23])
prefix = prefix_lm_inputs(prompt, gmask_id=tk.gmask_id, mask_id=tk.mask_id, sop_id=tk.sop_id)
prefix_labels = ["p1", "p2", "p3", "[gMASK]", "<sop>", "a1", "a2", "a3"]

text = [1, 31, 32, 33, 34, 35, 36]  # [CLS] x1 .. x6
sample = blank_infilling(text, [(5, 7), (3, 4)], mask_id=tk.mask_id, sop_id=tk.sop_id, eop_id=tk.eop_id)
glm_labels = ["[CLS]", "x1", "x2", "[M]", "x4", "[M]", "[S]", "x5", "x6", "[S]", "x3"]
print("GLM sample: sep =", sample.sep, "positions", sample.position_ids.tolist())

fig, axes = plt.subplots(1, 4, figsize=(15, 4.2))
draw(axes[0], causal_mask(8, 8, 0), "causal (LLaMA)")
draw(axes[1], pad_grid, "causal + 2 left pads")
draw(axes[2], prefix.attention_mask, "prefix LM (ChatGLM-6B)", prefix_labels, split=int(prefix.context_length))
draw(axes[3], sample.attention_mask, "GLM blank infilling: Part A | Part B", glm_labels, split=sample.sep)
axes[3].legend(handles=legend, loc="upper left", bbox_to_anchor=(1.02, 1))
fig.suptitle("Who may attend to whom (row = query, column = key)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The GLM grid is the table in `docs/glm.md` (1.4a): rows 0-5 see the six Part-A keys, then each Part-B row
# one more. The rule is simple enough to check against its definition, element by element:

# %%
L, sep = sample.attention_mask.shape[0], sample.sep
q, k = torch.arange(L)[:, None], torch.arange(L)[None, :]
assert torch.equal(sample.attention_mask, (k < sep) | (k <= q))
assert torch.equal(sample.attention_mask, infilling_attention_mask(L, sep))
c = int(prefix.context_length)
assert torch.equal(prefix.attention_mask, (k[:, :8] < c) | (k[:, :8] <= q[:8]))
assert torch.equal(pad_grid[2:, 2:], causal_mask(6, 6, 0)) and not pad_grid[2:, :2].any()
results["glm_sep"] = sep
results["glm_visible_pairs"] = int(sample.attention_mask.sum())
results["prefix_context_length"] = c

# %% [markdown]
# ## 2. GLM's two position rows
#
# GLM gives every token two positions, which `glm2d` RoPE rotates into two halves of each head. Row 0 is
# the position *in the text*: all tokens of a span share the position of the `[M]` they replace, so the model
# never learns how long a span is. Row 1 is the position *inside the span* (0 for all of Part A).

# %%
pos = sample.position_ids
fig, ax = plt.subplots(figsize=(9, 2.6))
ax.plot(range(L), pos[0], "o-", label="row 0: position in the text")
ax.plot(range(L), pos[1], "s-", label="row 1: position inside the span (block)")
ax.axvline(sep - 0.5, color="tab:red", lw=1, ls="--", label="Part A | Part B")
ax.set_xticks(range(L), glm_labels, fontsize=8)
ax.set_xlabel("token (input order)")
ax.set_ylabel("position id (tokens)")
ax.set_title("GLM 2D positions of the Fig. 2 sample")
ax.legend(fontsize=8, loc="upper left")
plt.tight_layout()
plt.show()
# docs/glm.md 1.4(a): positions 0 1 2 3 4 5 | 5 5 5 3 3, blocks 0 0 0 0 0 0 | 1 2 3 1 2
assert pos.tolist() == [[0, 1, 2, 3, 4, 5, 5, 5, 5, 3, 3], [0, 0, 0, 0, 0, 0, 1, 2, 3, 1, 2]]

# %% [markdown]
# ## 3. The perturbation proof
#
# A mask is only a claim until a model obeys it. Take a model (random weights will do), change the token at
# index j to another id, and compare every output position's logits with the unchanged run. If query q may
# not see key j, output q must be **bit-identical** (`torch.equal`, not "close"): a masked key enters the
# softmax as exp(-inf) = 0 exactly, so nothing of it can leak. Doing it for every j gives a grid
# `moved[q, j]`, measured from outside the model.
#
# With several layers, q could also be influenced *indirectly* (j -> k in layer 1, k -> q in layer 2). All
# four masks here are transitive (if q sees k and k sees j, q sees j), so the measured grid must equal the
# mask itself.

# %%
def influence(model, ids, **inputs):
    """moved[q, j]: does changing token j change output q at all? (bit-level comparison)"""
    with torch.no_grad():
        base = model(ids[None], **inputs)[0]
        moved = torch.zeros(len(ids), len(ids), dtype=torch.bool)
        for j in range(len(ids)):
            changed = ids.clone()
            changed[j] = (changed[j] + 7) % 256  # another ordinary token id
            out = model(changed[None], **inputs)[0]
            moved[:, j] = (out != base).any(-1)  # any logit of output q differs in any bit
    return moved


torch.manual_seed(0)
llama = archzoo.build_model("llama-tiny").eval()
torch.manual_seed(0)
glm = archzoo.build_model(cfg_glm).eval()

ids8 = torch.tensor([5, 6, 7, 8, 9, 10, 11, 12])
measured = {
    "causal": (influence(llama, ids8), causal_mask(8, 8, 0)),
    "padding": (influence(llama, ids8, attention_mask=padding, position_ids=(padding.cumsum(-1) - 1).clamp(min=0)), pad_grid),
    "prefix LM": (
        influence(glm, prompt, attention_mask=prefix.attention_mask[None], position_ids=prefix.position_ids[None]),
        prefix.attention_mask,
    ),
    "blank infilling": (influence(glm, sample.input_ids, **{k: v for k, v in sample.batch().items() if k != "input_ids"}), sample.attention_mask),
}
for name, (moved, allowed) in measured.items():
    print(f"{name:16s} measured influence == mask: {torch.equal(moved, allowed)}")
    assert torch.equal(moved, allowed)
    results[f"influence_equals_mask_{name.replace(' ', '_')}"] = torch.equal(moved, allowed)

# %% [markdown]
# The perturbed id may collide with a special token here (the GLM model does not care: it is a random
# model), and the `[gMASK]` / `<sop>` ids in the prefix row are perturbed too; what matters is only which
# outputs move. Drawn side by side, mask and measurement are the same picture:

# %%
fig, axes = plt.subplots(2, 4, figsize=(15, 7.5))
for col, (name, (moved, allowed)) in enumerate(measured.items()):
    draw(axes[0, col], allowed, f"{name}: the mask")
    draw(axes[1, col], moved, f"{name}: outputs that moved")
    axes[1, col].set_xlabel("perturbed token j (token index)")
    axes[1, col].set_ylabel("output position q (token index)")
axes[0, 3].legend(handles=legend, loc="upper left", bbox_to_anchor=(1.02, 1))
axes[1, 3].legend(handles=swatches("output changed", "bit-identical"), loc="upper left", bbox_to_anchor=(1.02, 1))
fig.suptitle("Masks (top) and the perturbation measurement (bottom): changing token j moves exactly the outputs that may see it")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. How far a visible change travels
#
# "Moved" hides the size. For the blank-infilling sample, perturb x4 (index 4, in Part A) and then x5 (index
# 7, in Part B) and plot max |Δ logit| per output position. A Part-A token moves every output (all of Part A
# sees it bidirectionally, all of Part B sees Part A); a Part-B token moves only itself and the Part-B tokens
# after it, and the plot shows an exact zero, not a small number, everywhere else.

# %%
inputs = {k: v for k, v in sample.batch().items() if k != "input_ids"}
with torch.no_grad():
    base = glm(sample.input_ids[None], **inputs)[0]
    deltas = {}
    for j in (4, 7):
        changed = sample.input_ids.clone()
        changed[j] += 7
        deltas[j] = (glm(changed[None], **inputs)[0] - base).abs().amax(-1)
fig, ax = plt.subplots(figsize=(9, 3.2))
width = 0.4
for offset, (j, d) in zip((-width / 2, width / 2), deltas.items()):
    ax.bar(torch.arange(L) + offset, d.clamp(min=1e-12), width, label=f"perturb {glm_labels[j]} (index {j})")
ax.set_yscale("log")
ax.set_ylim(1e-12, 10)
ax.axvline(sep - 0.5, color="tab:red", lw=1, ls="--", label="Part A | Part B")
ax.set_xticks(range(L), glm_labels, fontsize=8)
ax.set_xlabel("output position")
ax.set_ylabel("max |Δ logit| (logits)")
ax.set_title("GLM blank infilling: a Part-A token moves everything, a Part-B token only what follows it")
handles = ax.get_legend_handles_labels()[0] + [Patch(facecolor="white", edgecolor="gray", label="no bar: exactly 0")]
ax.legend(handles=handles, fontsize=8, loc="lower left")
plt.tight_layout()
plt.show()
assert (deltas[4] > 0).all()
assert (deltas[7][:7] == 0).all() and (deltas[7][7:] > 0).all()
results["partB_change_zero_outputs"] = int((deltas[7] == 0).sum())

# %% [markdown]
# ## 5. When SDPA may make the causal mask itself
#
# The reference attention (`blocks/attention.py`) hands `F.scaled_dot_product_attention` the boolean grid of
# section 1. SDPA turns it into a float matrix, keeps it for the backward, and adds it to every block of
# scores, the blocks wholly above the diagonal included, whose probabilities all come out exactly 0.
# `is_causal=True` says "key j is visible to query i iff j <= i" instead, and torch's kernel skips those
# blocks: about half the work of a long sequence. That triangle is anchored at the top left, so it is the
# causal mask only when query i sits at key slot i: no cache or prefix slots before the queries, no padding,
# no ALiBi bias. The fast form (`src/archzoo/fast/attention.py`) passes `is_causal` exactly then. Below:
# the two give the same numbers; which mask reaches SDPA in each case of a tiny LLaMA; and what it saves.

# %%
q, k, v = (torch.randn(1, 4, 300, 32) for _ in range(3))
grid = causal_mask(300, 300, 0)
by_grid = F.scaled_dot_product_attention(q, k, v, attn_mask=grid)
by_kernel = F.scaled_dot_product_attention(q, k, v, is_causal=True)
# the same float32 sums, so at most float32's rounding of a 300-term average of |v| <= max|v| apart
assert (by_grid - by_kernel).abs().max() <= 300 * 2.0**-23 * v.abs().max()
print("largest difference, boolean grid vs is_causal:", (by_grid - by_kernel).abs().max().item())

llama_tiny = archzoo.build_model("llama-tiny").eval()
seen = []
sdpa = F.scaled_dot_product_attention


def spy(*args, **kwargs):  # record which mask each layer hands SDPA, then run it
    seen.append("is_causal" if kwargs.get("is_causal") else "matrix")
    return sdpa(*args, **kwargs)


ids = torch.randint(1, 200, (2, 12))
left_padded = torch.ones(2, 12, dtype=torch.long)
left_padded[0, :4] = 0
cache = llama_tiny.new_cache(16)
cases = {
    "no padding": lambda: llama_tiny(ids),
    "left padding": lambda: llama_tiny(ids, attention_mask=left_padded),
    "prompt into a cache": lambda: llama_tiny(ids, cache=cache),
    "one decoding step": lambda: llama_tiny(ids[:, :1], cache=cache),
}
F.scaled_dot_product_attention = spy
try:
    mask_seen = {}
    with torch.no_grad():
        for case, run in cases.items():
            seen.clear()
            run()
            mask_seen[case] = sorted(set(seen))
finally:
    F.scaled_dot_product_attention = sdpa
for case, masks in mask_seen.items():
    print(f"{case:20s} SDPA got: {', '.join(masks)}")
assert mask_seen["no padding"] == mask_seen["prompt into a cache"] == ["is_causal"]
assert mask_seen["left padding"] == mask_seen["one decoding step"] == ["matrix"]
for case, masks in mask_seen.items():
    results[f"sdpa_is_causal_{case.replace(' ', '_')}"] = masks == ["is_causal"]


def forward_backward_ms(seq, **mask):
    """Median wall time of SDPA forward + backward over [1, 8, seq, 64]."""
    q, k, v = (torch.randn(1, 8, seq, 64, requires_grad=True) for _ in range(3))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v, **mask).sum().backward()
        times.append(time.perf_counter() - start)
    return 1e3 * sorted(times)[2]


lengths = [128, 256, 512, 1024, 2048]
with_grid = [forward_backward_ms(n, attn_mask=causal_mask(n, n, 0)) for n in lengths]
with_kernel = [forward_backward_ms(n, is_causal=True) for n in lengths]
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(lengths, with_grid, "o-", label="attn_mask = the boolean grid (reference)")
ax.plot(lengths, with_kernel, "o-", label="is_causal=True (fast form)")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("sequence length")
ax.set_ylabel("ms (forward + backward)")
ax.set_title("SDPA, 8 heads of 64, this CPU: the kernel skips the blocks above the diagonal")
ax.legend(fontsize=8)
plt.tight_layout()
plt.show()
print({n: f"{g / c:.2f}x" for n, g, c in zip(lengths, with_grid, with_kernel)})

# %%
print("RESULTS", json.dumps(results))
