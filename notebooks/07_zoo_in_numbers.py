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
# # 07 · The zoo in numbers: parameters and memory of every released config
#
# **What you will learn**
#
# - Where the parameters of a released model live: embeddings, attention, MLP, routed and shared
#   experts, router, norms, output head. All from `archzoo.count_params` on the `meta` device:
#   nothing is allocated, 671B parameters are counted in well under a second.
# - How much memory a model needs for inference (weights at fp32 / bf16 / int8 / int4 and the KV
#   cache) and for training (AdamW in mixed precision: 16 bytes per parameter, plus activations),
#   computed by `archzoo.estimate_memory` and set against the rules of thumb people quote:
#   ChatGLM-6B's README (FP16 13 GB, INT8 10 GB, INT4 6 GB) and "a 7B model needs 10-14 GB in FP16".
# - That the estimates are not guesses: for the configs this machine can run, the bytes of the actual
#   tensors (weights, quantized weights, KV cache, the peak of a training step) are measured beside
#   them.
#
# **Read beside it**
#
# - `src/archzoo/inspect/params.py` (the components and how each parameter is assigned)
# - `src/archzoo/inspect/memory.py` (weights, KV cache, training state)
# - `src/archzoo/inspect/train_step.py` (the peak of one step of archzoo's own training loop)
# - `src/archzoo/train/memory.py` (how a step's live tensor bytes are measured)
# - `src/archzoo/models/quantize.py` (what int8 / int4 store)

# %%
import json
import tempfile
from fnmatch import fnmatch
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import archzoo
from archzoo.config import config_paths
from archzoo.inspect import COMPONENTS
from archzoo.train import TrainSettings, train

torch.manual_seed(0)
results: dict = {}
GB, GiB = 1e9, 2**30

# %% [markdown]
# ## Parameters of every released config, by component
#
# Every config under `configs/` except the `*-tiny` teaching ones. The components sum to the total
# (each parameter belongs to exactly one); two totals are checked against the counts Hugging Face
# reports for the released checkpoints (`model.num_parameters()`): LLaMA-2-7B 6,738,415,616 and
# LLaMA-3-8B 8,030,261,248.

# %%
released = sorted(name for name in config_paths() if "tiny" not in name)
reports = {name: archzoo.count_params(name) for name in released}
for name, r in reports.items():
    assert sum(r.components.values()) == r.total, name
assert reports["llama2-7b"].total == 6_738_415_616
assert reports["llama3-8b"].total == 8_030_261_248
print(f"{len(reports)} released configs, from {min(r.total for r in reports.values()) / 1e9:.2f}B "
      f"to {max(r.total for r in reports.values()) / 1e9:.0f}B parameters")
results["released_configs"] = len(reports)
results["llama2_7b_params"] = reports["llama2-7b"].total

# %%
order = sorted(reports, key=lambda n: reports[n].total)
colours = dict(zip(COMPONENTS, plt.cm.tab10.colors))
fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 0.22 * len(order) + 1.5), sharey=True,
                             gridspec_kw={"width_ratios": [3, 1]})
left = [0.0] * len(order)
for part in COMPONENTS:
    share = [100 * reports[n].components[part] / reports[n].total for n in order]
    if not any(share):
        continue
    ax.barh(order, share, left=left, color=colours[part], label=part)
    left = [a + b for a, b in zip(left, share)]
ax.set_xlim(0, 100)
ax.set_ylim(-0.6, len(order) - 0.4)
ax.set_xlabel("share of the model's parameters (%)")
ax.set_title("Where the parameters are (components sum to 100%)")
ax.legend(ncol=4, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.04 - 1.2 / len(order)))
bx.barh(order, [reports[n].total / 1e9 for n in order], color="grey")
bx.set_xscale("log")
bx.set_xlabel("total parameters (billions, log scale)")
bx.set_title("Total")
ax.tick_params(axis="y", labelsize=7)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the picture: small models spend a large share on the embedding (Qwen2.5-0.5B: a
# 151,936-token vocabulary at d_model 896 is a quarter of it, tied with the head); dense models
# spend about two thirds on the MLP; MoE models are almost all routed experts (DeepSeek-V3: 256
# experts in each of 58 layers), which a token mostly does not use (notebook 06).

# %%
qwen05 = reports["qwen2.5-0.5b"]
v3 = reports["deepseek-v3"]
results["qwen2.5_0.5b_embedding_share"] = qwen05.components["embeddings"] / qwen05.total
results["deepseek_v3_routed_share"] = v3.components["routed_experts"] / v3.total
assert results["qwen2.5_0.5b_embedding_share"] > 0.25 and results["deepseek_v3_routed_share"] > 0.9
print({k: round(v, 3) for k, v in results.items() if isinstance(v, float)})

# %% [markdown]
# ## Inference memory against the rules of thumb
#
# `estimate_memory(cfg, dtype=..., seq_len=..., batch=...)` gives the weights at every dtype and the
# KV cache. int8 / int4 are what `archzoo.quantize` stores (weight-only, per group of 128: integers
# plus bf16 scales; embedding, norms and the output head stay bf16), so their cache is bf16.
#
# **ChatGLM-6B's README** lists the least GPU memory to run it: FP16 13 GB, INT8 10 GB, INT4 6 GB.
# The weights alone at fp16 are 13.4e9 bytes (12.5 GiB): that row of the README *is* the weights.
# The int8 and int4 rows are more than the weights: ChatGLM keeps its 150,528-token embedding and
# output head in fp16 (2.5 GB together, as archzoo does) and the rest is the running model's
# working memory. Weights plus a 2,048-token cache land within 15% of every row.

# %%
chatglm = archzoo.load_config("chatglm-6b")
readme = {"fp16": 13.0, "int8": 10.0, "int4": 6.0}  # GB, ChatGLM-6B README, "hardware requirements"
chatglm_rows = {}
for dtype, stated in readme.items():
    m = archzoo.estimate_memory(chatglm, dtype=dtype, seq_len=2048, params=reports["chatglm-6b"])
    weights = m.inference_bytes - m.kv_cache_bytes
    chatglm_rows[dtype] = (weights, m.kv_cache_bytes, stated)
    print(f"chatglm-6b {dtype}: weights {weights / GB:5.2f} GB + KV cache (2,048 tokens) {m.kv_cache_bytes / GB:4.2f} GB "
          f"= {m.inference_bytes / GB:5.2f} GB;  README {stated} GB")
    assert weights <= 1.05 * stated * GB, dtype  # the weights must fit in what the README says is enough
    assert abs(m.inference_bytes / GB - stated) <= 0.15 * stated, dtype
    results[f"chatglm_6b_{dtype}_inference_bytes"] = m.inference_bytes

# %% [markdown]
# **"A 7B model needs 10-14 GB in FP16."** 2 bytes per parameter: LLaMA(-2)-7B's 6.74B parameters are
# 13.5 GB, inside the band. Other "7B" models are not 7B at all: Qwen-7B and Qwen2-7B carry 151,936-
# and 152,064-token vocabularies with untied heads, which pushes them past 14 GB.

# %%
seven = sorted((n for n, r in reports.items() if 6.0e9 <= r.total <= 8.1e9), key=lambda n: reports[n].total)
fp16_weights = {n: 2 * reports[n].total for n in seven}
for name in ("llama-7b", "llama2-7b"):
    assert 10 * GB <= fp16_weights[name] <= 14 * GB, name
inside = sum(10 * GB <= b <= 14 * GB for b in fp16_weights.values())
print(f"{inside} of {len(seven)} configs of 6-8B parameters fit the 10-14 GB rule")
results["seven_b_configs_in_rule"] = inside

fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1, 2]})
x = range(len(readme))
ax.bar(x, [w / GB for w, _, _ in chatglm_rows.values()], color="tab:blue", label="weights (estimate)")
ax.bar(x, [kv / GB for _, kv, _ in chatglm_rows.values()], bottom=[w / GB for w, _, _ in chatglm_rows.values()],
       color="tab:orange", label="KV cache, 2,048 tokens (estimate)")
ax.hlines([s for _, _, s in chatglm_rows.values()], [i - 0.4 for i in x], [i + 0.4 for i in x], color="black",
          lw=2, zorder=3, label="README: least GPU memory")
ax.set_xticks(list(x), [d.upper() for d in readme])
ax.set_ylabel("memory (GB = 1e9 bytes)")
ax.set_title("ChatGLM-6B: estimate against its README")
ax.set_ylim(0, 17)
ax.legend(fontsize=8, loc="upper right")
bx.axhspan(10, 14, color="tab:green", alpha=0.15, label='"7B needs 10-14 GB in FP16"')
bx.bar(seven, [fp16_weights[n] / GB for n in seven], color="tab:blue", label="fp16 weights (estimate)")
bx.set_ylabel("fp16 weights (GB = 1e9 bytes)")
bx.set_title("Every 6-8B config against the rule of thumb")
bx.tick_params(axis="x", rotation=40, labelsize=8)
for label in bx.get_xticklabels():
    label.set_horizontalalignment("right")
bx.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Training memory
#
# Mixed-precision AdamW keeps, per parameter, 16-bit weights and gradients (2 + 2 bytes), fp32 master
# weights (4) and two fp32 moments (4 + 4): **16 bytes** (ZeRO, Rajbhandari et al. 2020). Activations
# come on top and grow with batch x sequence; activation checkpointing keeps only each layer's input.
# For LLaMA-2-7B at one 4,096-token sequence that is 108 GB of state and 18 GB of activations: a 7B
# model that runs in 14 GB needs about 9x that to train with full fine-tuning (notebook 08: LoRA).

# %%
train_names = ["qwen2.5-0.5b", "llama3.2-3b", "chatglm-6b", "llama2-7b", "llama2-13b"]
train_reports = {n: archzoo.estimate_memory(n, seq_len=4096, batch=1, params=reports[n]) for n in train_names}
for name, m in train_reports.items():
    assert sum(m.training_state_bytes.values()) == 16 * m.params, name
results["llama2_7b_training_bytes"] = train_reports["llama2-7b"].training_bytes

fig, ax = plt.subplots(figsize=(10, 4.5))
bottom = [0.0] * len(train_names)
parts = list(train_reports["llama2-7b"].training_state_bytes)
for part, colour in zip(parts, plt.cm.Blues([0.35, 0.5, 0.65, 0.8, 0.95])):
    values = [train_reports[n].training_state_bytes[part] / GB for n in train_names]
    ax.bar(train_names, values, bottom=bottom, color=colour, label=part.replace("_", " "))
    bottom = [a + b for a, b in zip(bottom, values)]
acts = [train_reports[n].activation_bytes / GB for n in train_names]
ax.bar(train_names, acts, bottom=bottom, color="tab:orange", label="activations (1 x 4,096 tokens, 16-bit)")
inference = [2 * train_reports[n].params / GB for n in train_names]
ax.hlines(inference, [i - 0.4 for i in range(len(train_names))], [i + 0.4 for i in range(len(train_names))], color="black",
          lw=2, zorder=3, label="bf16 weights alone (inference)")
ax.set_ylabel("memory (GB = 1e9 bytes)")
ax.set_title("Full training with mixed-precision AdamW: 16 bytes per parameter + activations")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Measured beside the estimate, on what this machine can run
#
# The tiny configs run on a laptop CPU, so here every estimate meets a measurement:
#
# - **weights**: the bytes of the model's own stored tensors (`state_dict()`, each storage once;
#   non-weight buffers such as DeepSeek-V3's router bias left out, as the estimate leaves them out),
#   built at fp32 and bf16, and after `archzoo.quantize(model, "int8" | "int4", group_size=32)`
#   (whose integer weights, scales and minimums are buffers of the quantized layers);
# - **KV cache**: the bytes of the tensors a forward pass writes into `model.new_cache(...)`;
# - **training**: the peak of live tensor bytes during the second step of `archzoo.train.train`
#   (the first with AdamW's state), which every run logs as `peak_tensor_bytes`, against
#   `estimate_memory(...).training_step.peak` at the same batch, length and precision.
#
# (The process's resident memory would add torch's own ~300 MB of code and heaps and the allocator's
# slack: numbers no config can predict, so the live tensor bytes are what the estimate is about.)

# %%
def stored_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's stored weight tensors (quantized ones included): every storage once,
    the non-weight buffers ``count_params`` reports on their own line (V3's router bias) left out."""
    not_weights = archzoo.count_params(model.config).buffers  # name patterns, layers folded to "*"
    seen, total = set(), 0
    for name, tensor in model.state_dict().items():
        storage = tensor.untyped_storage()
        if any(fnmatch(name, pattern) for pattern in not_weights) or storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


BATCH, SEQ, GROUP = 2, 256, 32  # tiny d_model = 64: quantization groups of 32 columns
measured, estimated = {}, {}
for name in ["llama-tiny", "qwen3-tiny", "qwen3-moe-tiny", "deepseek-tiny"]:
    cfg = archzoo.load_config(name)
    est = archzoo.estimate_memory(cfg, batch=BATCH, seq_len=SEQ, dtype="fp32", group_size=GROUP)
    row_m, row_e = {}, {}
    torch.manual_seed(0)
    model = archzoo.build_model(cfg).eval()
    row_m["weights fp32"], row_e["weights fp32"] = stored_bytes(model), est.weight_bytes["fp32"]
    cache = model.new_cache(SEQ)
    with torch.no_grad():
        model(torch.randint(0, cfg.model.vocab_size, (BATCH, SEQ)), cache=cache)
    row_m["KV cache fp32"] = sum(t.numel() * t.element_size() for layer in cache.layers for t in layer.buffers.values())
    row_e["KV cache fp32"] = est.kv_cache_bytes
    model = model.to(torch.bfloat16)
    row_m["weights bf16"], row_e["weights bf16"] = stored_bytes(model), est.weight_bytes["bf16"]
    for mode in ("int8", "int4"):
        quantized = archzoo.quantize(archzoo.build_model(cfg, dtype=torch.bfloat16), mode, group_size=GROUP)
        row_m[f"weights {mode}"], row_e[f"weights {mode}"] = stored_bytes(quantized), est.weight_bytes[mode]
    measured[name], estimated[name] = row_m, row_e
    for key in row_m:
        assert row_m[key] == row_e[key], (name, key, row_m[key], row_e[key])  # byte for byte
    print(f"{name:15s} " + "  ".join(f"{k} {v / 1e6:.3f} MB" for k, v in row_m.items()))

# %% [markdown]
# Weights and cache agree byte for byte: they are sums of shapes, and the estimate reads the
# shapes off the same blocks on the `meta` device. The training peak is a forecast of a *dynamic*
# quantity (which activations are alive when backward starts), so it agrees only closely: it leaves
# out the token ids, the RoPE tables and small temporaries, a few hundred kB here. We ask for 5%.

# %%
STEP = TrainSettings(steps=2, batch=8, seq_len=128, warmup=1, val_fraction=0.0, save_every=0)
with tempfile.TemporaryDirectory() as folder:
    run = train("llama-tiny", out=Path(folder) / "run", settings=STEP, progress=False)
peak_measured = run.records[1]["peak_tensor_bytes"]
step_estimate = archzoo.estimate_memory("llama-tiny", batch=STEP.batch, seq_len=STEP.seq_len, precision="fp32").training_step
print(f"llama-tiny training step: measured peak {peak_measured / 1e6:.2f} MB, estimate {step_estimate.peak / 1e6:.2f} MB "
      f"({100 * (peak_measured / step_estimate.peak - 1):+.1f}%), peak at {step_estimate.peak_at}")
assert abs(peak_measured / step_estimate.peak - 1) <= 0.05
results["llama_tiny_train_peak_estimate"] = int(step_estimate.peak)
results["llama_tiny_int4_weight_bytes"] = measured["llama-tiny"]["weights int4"]

# %%
fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 2]})
keys = list(measured["llama-tiny"])
width = 0.2
for i, name in enumerate(measured):
    ax.bar([k + (i - 1.5) * width for k in range(len(keys))], [measured[name][k] / 1e6 for k in keys], width, label=name)
    ax.scatter([k + (i - 1.5) * width for k in range(len(keys))], [estimated[name][k] / 1e6 for k in keys],
               marker="_", s=120, color="black", zorder=3, label="estimate" if i == 0 else None)
ax.set_xticks(range(len(keys)), keys)
ax.set_ylabel(f"bytes (MB; KV cache: {BATCH} x {SEQ} tokens)")
ax.set_title("Tiny configs: measured tensor bytes (bars) and estimates (black)")
ax.legend(fontsize=8)
step_parts = {
    "weights": step_estimate.weights, "AdamW moments": step_estimate.optimizer_state,
    "activations": step_estimate.activations, "logit gradients": step_estimate.logit_gradients,
}
bottom = 0.0
for (part, value), colour in zip(step_parts.items(), plt.cm.Set2.colors):
    bx.bar(["estimate"], [value / 1e6], bottom=bottom, color=colour, label=part)
    bottom += value / 1e6
bx.bar(["measured"], [peak_measured / 1e6], color="grey", label="measured peak (live tensors)")
bx.set_ylabel("bytes at the step's peak (MB)")
bx.set_ylim(0, 1.5 * peak_measured / 1e6)
bx.set_title(f"llama-tiny, one fp32 training step of {STEP.batch} x {STEP.seq_len} tokens")
bx.legend(fontsize=8, loc="upper center", ncol=2)
fig.tight_layout()
plt.show()

# %%
print("RESULTS", json.dumps(results))
