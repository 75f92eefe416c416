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
# # 06 · Mixture of experts: routing, load balance, total vs active parameters
#
# **What you will learn**
#
# - How a router picks k of E experts for a token: softmax top-k (Switch, Qwen-MoE), DeepSeek's
#   group-limited routing (V2: best expert per group; V3: sum of the two best) and DeepSeek-V3's
#   sigmoid scores with a correction bias that steers the choice but not the weights. Each is
#   worked by hand on one token and checked against archzoo's router.
# - Why routers collapse onto a few experts when nothing balances them, and how two remedies behave
#   on a short training run of a tiny MoE: the auxiliary load-balancing loss (Switch / GShard) and
#   DeepSeek-V3's auxiliary-loss-free bias update.
# - How much of a released MoE model one token actually uses: total against active parameters.
#
# **Read beside it**
#
# - `src/archzoo/blocks/router.py` (scoring, group limits, the correction bias)
# - `src/archzoo/blocks/moe.py` (the layer, the aux loss, the bias update)
# - `src/archzoo/blocks/experts.py` (the stacked experts)
# - `src/archzoo/train/loop.py` (where the aux loss and the bias update enter a training step)
# - `src/archzoo/inspect/params.py` (total and active parameters)

# %%
import dataclasses
import json

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch

import archzoo
from archzoo.train import DEFAULT_CORPUS, ByteTokenizer, Split, Trainer, TrainSettings

torch.manual_seed(0)
results: dict = {}

# %% [markdown]
# ## Three routers on one token
#
# Each tiny config below is a released router scaled down to 8 experts in 4 groups of 2
# (`configs/qwen-moe/qwen3-moe-tiny.toml`, `configs/deepseek/deepseek-v2-tiny.toml`,
# `configs/deepseek/deepseek-tiny.toml`). We take the router of each model's first MoE layer and set
# its gate so that the router logits of our token are exactly the eight numbers we write
# (the gate W_r is `[E, d]`; we make it pick out the token's first 8 features).
#
# | config | scores s | choice | weights |
# |---|---|---|---|
# | qwen3-moe-tiny | softmax(l) | top-2 of s | s renormalised to sum 1 |
# | deepseek-v2-tiny | softmax(l) | top-2 inside the best 2 of 4 groups (group score: its max) | s x 2.0 |
# | deepseek-tiny (V3) | sigmoid(l) | top-2 of s + b inside the best 2 groups (group score: sum of its two best) | s renormalised, x 2.5 |

# %%
def moe_config(name: str, **moe) -> archzoo.Config:
    cfg = archzoo.load_config(name)
    return cfg.replace(moe=dataclasses.replace(cfg.moe, **moe)) if moe else cfg


def router_of(cfg: archzoo.Config):
    """The router of the first MoE layer of a freshly built model, its gate set to read features 0..E-1."""
    model = archzoo.build_model(cfg, implementation="reference")
    layer = next(layer for layer in model.layers if layer.plan.mlp == "moe")
    router = layer.mlp.router
    with torch.no_grad():
        router.weight.zero_()
        router.weight[:, : cfg.moe.n_experts] = torch.eye(cfg.moe.n_experts)
    return router


logits = torch.tensor([2.0, -1.0, 1.2, 1.1, 1.15, 0.9, -0.5, -2.0])  # experts 0..7, groups {0,1} {2,3} {4,5} {6,7}
token = torch.zeros(1, 64)
token[0, :8] = logits
print("router logits:", logits.tolist())

# %% [markdown]
# The same arithmetic by hand, in plain torch, from the equations in `blocks/router.py`'s docstring.
# This is the independent reference the routers are checked against.

# %%
def by_hand(scoring: str, top_k: int, n_groups: int, keep: int, group_score: str, normalize: bool,
            scale: float, bias: torch.Tensor | None = None):
    s = logits.softmax(-1) if scoring == "softmax" else logits.sigmoid()
    c = s if bias is None else s + bias
    groups = c.view(n_groups, -1)
    g = groups.max(-1).values if group_score == "max" else groups.topk(2, -1).values.sum(-1)
    kept = g.topk(keep).indices
    allowed = torch.zeros(n_groups, dtype=torch.bool)
    allowed[kept] = True
    c = torch.where(allowed.repeat_interleave(len(logits) // n_groups), c, torch.tensor(float("-inf")))
    chosen = c.topk(top_k).indices
    w = s[chosen]
    if normalize:
        w = w / w.sum()
    return s, chosen, w * scale


v3_bias = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5])  # as if group {6, 7} had been starved
cases = {
    "softmax top-2\n(qwen3-moe-tiny)": (moe_config("qwen3-moe-tiny"), ("softmax", 2, 1, 1, "max", True, 1.0)),
    "group-limited, max\n(deepseek-v2-tiny)": (moe_config("deepseek-v2-tiny"), ("softmax", 2, 4, 2, "max", False, 2.0)),
    "group-limited, keep 1 group\n(deepseek-v2-tiny, topk_groups=1)":
        (moe_config("deepseek-v2-tiny", topk_groups=1), ("softmax", 2, 4, 1, "max", False, 2.0)),
    "sigmoid, top-2 sum groups\n(deepseek-tiny = V3)": (moe_config("deepseek-tiny"), ("sigmoid", 2, 4, 2, "top2_sum", True, 2.5)),
    "sigmoid + bias +0.5 on experts 6, 7\n(deepseek-tiny = V3)": (moe_config("deepseek-tiny"), ("sigmoid", 2, 4, 2, "top2_sum", True, 2.5)),
}
routed = {}
for label, (cfg, hand_args) in cases.items():
    router = router_of(cfg)
    bias = None
    if "bias" in label:
        bias = v3_bias
        with torch.no_grad():
            router.e_score_correction_bias.copy_(bias)
    decision = router(token)
    s, chosen, w = by_hand(*hand_args, bias=bias)
    assert decision.indices[0].tolist() == chosen.tolist(), (label, decision.indices, chosen)
    assert torch.allclose(decision.weights[0], w, rtol=1e-6, atol=0), (label, decision.weights, w)  # float32, same ops
    routed[label] = (s, chosen.tolist(), w.tolist())
    print(f"{label.replace(chr(10), ' '):62s} experts {chosen.tolist()}  weights {[round(x, 3) for x in w.tolist()]}")

plain = routed["softmax top-2\n(qwen3-moe-tiny)"][1]
v3 = routed["sigmoid, top-2 sum groups\n(deepseek-tiny = V3)"][1]
biased = routed["sigmoid + bias +0.5 on experts 6, 7\n(deepseek-tiny = V3)"]
assert plain == [0, 2] and 0 not in v3  # V3's group rule drops the single best expert: its group's second is weak
assert 6 in biased[1] and 6 not in v3  # the bias brings expert 6 in ...
w6 = biased[2][biased[1].index(6)]
assert abs(w6 - 2.5 * logits[6].sigmoid() / (logits[6].sigmoid() + logits[2].sigmoid())) < 1e-6  # ... paid its unbiased score
results.update({"softmax_top2_first": plain[0], "softmax_top2_second": plain[1], "v3_top2_first": v3[0], "v3_top2_second": v3[1]})

# %% [markdown]
# What the table shows:
#
# - **Group max with top_k ≤ kept groups never changes the choice** (row 2 = row 1): the best expert's
#   group is always kept, and so is the group of the second best. It bites when fewer groups are kept
#   than experts chosen (DeepSeek-V2 picks 6 experts from 3 of 8 groups); keeping one group here
#   (row 3) forces expert 1 (logit -1.0) in over expert 2 (1.2). The point of the limit is
#   communication: with the groups on different devices, a token's experts sit on at most M of them.
# - **V3 scores a group by its two best experts**, so expert 0, the single best, is dropped: its
#   partner is weak (row 4).
# - **The correction bias changes which experts win, not what they are paid** (row 5): with +0.5 on
#   experts 6 and 7 their group is kept and expert 6 is chosen, but its weight comes from its
#   unbiased score σ(-0.5) = 0.38, renormalised against expert 2's σ(1.2) = 0.77 and scaled by 2.5.

# %%
fig, axes = plt.subplots(1, len(routed), figsize=(17, 3.6), sharey=False)
colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
for ax, (label, (s, chosen, w)) in zip(axes, routed.items()):
    bars = ax.bar(range(8), s.tolist(), color=[colours[i // 2] for i in range(8)], alpha=0.35)
    for i, weight in zip(chosen, w):
        bars[i].set_alpha(1.0)
        bars[i].set_edgecolor("black")
        ax.text(i, s[i].item(), f"w={weight:.2f}", ha="center", va="bottom", fontsize=8)
    ax.set_title(label, fontsize=9)
    ax.set_xticks(range(8))
    ax.set_xlabel("expert (colour = group)")
    ax.set_ylabel("score s (softmax or sigmoid)")
    ax.set_ylim(0, 1.25 * s.max().item())
axes[0].legend(handles=[Patch(color="grey", alpha=0.35, label="not chosen"),
                        Patch(facecolor="grey", edgecolor="black", label="chosen (w = output weight)")],
               fontsize=7, loc="upper right")
fig.suptitle("One token, five routing rules: solid bars are the experts chosen")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Load balance over a short training run
#
# A router trained only on the language-modelling loss tends to feed the experts that are already
# good, which get better, which get fed more: a few experts take most tokens and the rest starve.
# We train `deepseek-tiny` (2 MoE layers of 8 experts, top-2, plus one shared expert) on the
# Shakespeare sample three ways, from the same initial weights and batches:
#
# - **no balancing**: V3's sigmoid routing without its correction bias, and no aux loss;
# - **aux loss**: the Switch / GShard loss L_aux = α E Σ_i f_i P_i added to the loss (α = 0.01);
# - **bias update** (DeepSeek-V3, aux-loss-free): after each step, b_i += γ sign(mean load - load_i).
#   V3 uses γ = 0.001 over hundreds of thousands of steps; in a 60-step demonstration the bias could
#   move at most 0.06, so we use γ = 0.01, ten times faster (the rule is the same).
#
# The imbalance of a step is max load / mean load per MoE layer (1 = perfectly even; with top-2 of 8
# the worst possible is 4: one expert in every token's pair), averaged over the two layers. The loads
# are read with a forward hook on each MoE layer, which returns them (`MoEOutput.expert_load`).

# %%
STEPS = 60
text = DEFAULT_CORPUS.read_text(encoding="utf-8")
ids = torch.tensor(ByteTokenizer().encode(text))
data = Split(train=ids[:150_000], val=ids[150_000:])
settings = TrainSettings(steps=STEPS, batch=8, seq_len=128, lr=3e-3, warmup=10, val_fraction=0.0)

runs = {
    "no balancing": moe_config("deepseek-tiny", correction_bias=False),
    "aux loss (α = 0.01)": moe_config("deepseek-tiny", correction_bias=False, aux_loss_coef=0.01),
    "bias update (γ = 0.01)": moe_config("deepseek-tiny", bias_update_rate=0.01),
}
history = {}
for label, cfg in runs.items():
    torch.manual_seed(0)  # the same initial weights and data order for every run
    model = archzoo.build_model(cfg)
    loads: list[torch.Tensor] = []
    moe_layers = [layer.mlp for layer in model.layers if layer.plan.mlp == "moe"]
    for moe in moe_layers:
        moe.register_forward_hook(lambda module, inputs, output, loads=loads: loads.append(output.expert_load.float()))
    trainer = Trainer(model, data, settings)
    imbalance, losses = [], []
    for _ in range(STEPS):
        first = len(loads)
        losses.append(trainer.train_step()["loss"])
        step_loads = torch.stack(loads[first:])  # [MoE layers, E] tokens per expert in this step
        imbalance.append((step_loads.amax(-1) / step_loads.mean(-1)).mean().item())
    final_bias = [moe.router.e_score_correction_bias for moe in moe_layers if moe.router.e_score_correction_bias is not None]
    history[label] = {"imbalance": imbalance, "loss": losses, "last_loads": step_loads, "bias": final_bias}
    print(f"{label:24s} loss {losses[0]:.2f} -> {losses[-1]:.2f};  imbalance first 10 steps "
          f"{sum(imbalance[:10]) / 10:.2f}, last 20 steps {sum(imbalance[-20:]) / 20:.2f}")

# %%
fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(16, 4.5))
for label, h in history.items():
    ax.plot(range(1, STEPS + 1), h["imbalance"], label=label)
    bx.plot(range(1, STEPS + 1), h["loss"], label=label)
ax.axhline(1.0, color="grey", ls=":", lw=1)
ax.axhline(4.0, color="grey", ls=":", lw=1)
ax.text(STEPS, 4.03, "worst possible (top-2 of 8)", fontsize=8, color="grey", va="bottom", ha="right")
ax.set_xlabel("training step")
ax.set_ylabel("max / mean expert load (ratio, 1 = even)")
ax.set_title("Expert load imbalance per step")
ax.legend(fontsize=8)
bx.set_xlabel("training step")
bx.set_ylabel("training loss (nats per byte)")
bx.set_title("Language-modelling loss")
bx.legend(fontsize=8)
width = 0.27
for i, (label, h) in enumerate(history.items()):
    last = h["last_loads"][-1]  # the last MoE layer's loads at the last step
    cx.bar(torch.arange(8) + (i - 1) * width, (last / last.sum() * 100).tolist(), width, label=label)
cx.axhline(100 / 8, color="grey", ls=":", lw=1, label="even share (1/8)")
cx.set_xlabel("expert (last MoE layer)")
cx.set_ylabel("share of routed token slots at the last step (%)")
cx.set_title("Who gets the tokens at the end")
cx.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The bias update must leave the experts more evenly loaded than no balancing does, over the second
# half of the run (averaging 30 steps takes out the step-to-step noise of a batch of 1,024 tokens).
# The losses are close: balancing costs the language model little here, which is the point of both
# methods.

# %%
def late_mean(values):
    return sum(values[STEPS // 2 :]) / (STEPS - STEPS // 2)


late = {label: late_mean(h["imbalance"]) for label, h in history.items()}
print({k: round(v, 3) for k, v in late.items()})
assert late["bias update (γ = 0.01)"] < 0.7 * late["no balancing"], late
assert late["aux loss (α = 0.01)"] < late["no balancing"], late
results.update({
    "imbalance_late_none": late["no balancing"],
    "imbalance_late_aux": late["aux loss (α = 0.01)"],
    "imbalance_late_bias": late["bias update (γ = 0.01)"],
    "bias_evens_load": late["bias update (γ = 0.01)"] < 0.7 * late["no balancing"],
})

# %% [markdown]
# ## Total against active parameters of the released MoE models
#
# A token passes through the attention, the shared experts and k of the E routed experts of every
# MoE layer: `count_params(cfg).active`. The published figures (model cards and papers) are rounded
# and differ on whether the input embedding counts as "activated" (DeepSeek-V2-Lite's 2.4B leaves it
# out, Qwen's figures keep it), so the check against them is 1% on totals and 12% on active counts.

# %%
published = {  # total, active (billions), from each model's paper or model card
    "qwen1.5-moe-a2.7b": (14.3, 2.7),
    "qwen2-57b-a14b": (57.4, 14.2),
    "qwen3-30b-a3b": (30.5, 3.3),
    "qwen3-235b-a22b": (235.0, 22.0),
    "deepseek-moe-16b": (16.4, 2.8),
    "deepseek-v2-lite": (15.7, 2.4),
    "deepseek-v2": (236.0, 21.0),
    "deepseek-v3": (671.0, 37.0),
}
reports = {name: archzoo.count_params(name) for name in published}
for name, r in reports.items():
    total, active = published[name]
    print(f"{name:20s} total {r.total / 1e9:7.2f}B (published {total}B)   active {r.active / 1e9:6.2f}B "
          f"(published {active}B)   {100 * r.active / r.total:4.1f}% of the model per token")
    assert abs(r.total / 1e9 - total) <= 0.01 * total, name
    assert abs(r.active / 1e9 - active) <= 0.12 * active, name
    results[f"{name}_active_params"] = r.active

fig, ax = plt.subplots(figsize=(10, 4.5))
names = list(reports)
x = torch.arange(len(names))
ax.bar(x - 0.2, [reports[n].total / 1e9 for n in names], 0.4, label="total parameters")
ax.bar(x + 0.2, [reports[n].active / 1e9 for n in names], 0.4, label="active per token")
ax.set_yscale("log")
ax.set_xticks(x.tolist(), names, rotation=25, ha="right")
ax.set_ylabel("parameters (billions, log scale)")
ax.set_title("Released MoE models: what a token uses against what is stored")
for i, n in enumerate(names):
    ax.text(i + 0.2, reports[n].active / 1e9 * 1.1, f"{100 * reports[n].active / reports[n].total:.0f}%",
            ha="center", fontsize=8)
ax.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# DeepSeek-V3 stores 671B parameters and uses 5.6% of them per token: its compute per token is
# that of a 37B dense model, its memory that of a 671B one (notebook 07 puts bytes on that).

# %%
# The imbalance figures come from 60 trained steps: float32 kernels that sum in another order (another
# CPU's SIMD path) move the weights by ~1e-6 per step, and a routing choice near a tie can flip, which
# moves one step's loads by a token or two. 10% on a 30-step mean of ratios around 1-4 covers that;
# the conclusion (bias_evens_load) has a 30% margin and is compared exactly.
results_rtol = {"imbalance_late_none": 0.1, "imbalance_late_aux": 0.1, "imbalance_late_bias": 0.1}
print("RESULTS", json.dumps(results))
