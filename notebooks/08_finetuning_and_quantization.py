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
# # 08 · Fine-tuning and quantization: LoRA, P-tuning v2, merging, int8 / int4
#
# **What you will learn**
#
# - How LoRA (a trainable low-rank update B A beside each frozen weight) and P-tuning v2 (trainable
#   keys and values ahead of every layer's sequence) adapt a pretrained model while training a few
#   percent of its parameters, and what that saves in memory, estimated and measured.
# - That merging LoRA folds the update into the weight, W' = W + (α / r) B A, so the merged model is
#   a plain model that computes what base + adapter computed.
# - What weight-only int8 and int4 quantization (`archzoo.quantize`) cost in perplexity on held-out
#   text, against the float model, and what they save in bytes.
#
# We pretrain a tiny LLaMA on Shakespeare for a few seconds, then fine-tune it on a text it has never
# seen: the same kind of text in another style, Shakespeare IN CAPITALS.
#
# **Read beside it**
#
# - `src/archzoo/blocks/lora.py` (the LoRA layer, merge and unmerge)
# - `src/archzoo/blocks/prefix.py` (P-tuning v2's prefix keys and values)
# - `src/archzoo/adapters/lora.py` and `src/archzoo/adapters/prefix.py` (adding them to a model)
# - `src/archzoo/inspect/adapter_memory.py` (what adapters change in a training step's memory)
# - `src/archzoo/blocks/quant.py` and `src/archzoo/models/quantize.py` (int8 / int4 weights)

# %%
import json
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

import archzoo
from archzoo.train import DEFAULT_CORPUS, LoRATraining, PrefixTraining, TrainSettings, evaluate, train

torch.manual_seed(0)
results: dict = {}
work = Path(tempfile.mkdtemp(prefix="archzoo-08-"))

# %% [markdown]
# ## A tiny pretrained model
#
# `llama-tiny` (2 layers, d_model 128, GQA, SwiGLU: 0.5M parameters) trained for 100 steps on the
# shipped Shakespeare sample (`archzoo.train.DEFAULT_CORPUS`, bytes as tokens). The run folder holds
# the log, a loss plot and the trained model as a Hugging Face checkpoint (`base/model`).

# %%
pretrain = TrainSettings(steps=100, batch=8, seq_len=64, lr=3e-3, warmup=10, eval_every=50, save_every=0)
base = train("llama-tiny", out=work / "base", settings=pretrain, progress=False)
print(f"pretrained: train loss {base.records[-1]['loss']:.3f}, held-out loss {base.records[-1]['val_loss']:.3f} "
      f"nats/byte (uniform over 256 bytes: {torch.log(torch.tensor(256.0)):.3f})")
assert base.records[-1]["val_loss"] < 0.75 * torch.log(torch.tensor(256.0)).item()  # it learned something

# %% [markdown]
# ## Fine-tuning on new text: LoRA and P-tuning v2
#
# The new text is the last 80 kB of the Shakespeare sample in upper case, its last 10% held out
# (which lies in the pretraining run's held-out tail too: no fine-tuned model has seen it, in either
# case). Capitals are rare in the pretraining text (names, line starts), so the base model is poor at it.
# Both methods freeze the base and train only their adapters:
#
# - **LoRA** (Hu et al. 2021), rank r = 8, α = 16 on every projection of attention and MLP
#   (`q_proj k_proj v_proj o_proj gate_proj up_proj down_proj`): per adapted weight [out, in],
#   r (in + out) parameters.
# - **P-tuning v2** (Liu et al. 2022), 16 prefix slots: per layer, 16 keys and 16 values for each
#   K/V head, 2 x layers x 16 x n_kv_heads x head_dim parameters. Prefixes learn slowly at LoRA's
#   learning rate; as in the P-tuning v2 paper we give them a larger one (1e-2).
#
# Each run logs the training loss, the held-out loss every 10 steps, and the measured peak of live
# tensor bytes of its second step (`peak_tensor_bytes`).

# %%
shouted = DEFAULT_CORPUS.read_text(encoding="utf-8")[-80_000:].upper()
(work / "shouted.txt").write_text(shouted, encoding="utf-8")
print(repr(shouted[-120:]))
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
finetune = TrainSettings(steps=40, batch=8, seq_len=64, lr=3e-3, warmup=5, eval_every=10, save_every=0, val_fraction=0.1)
methods = {
    "LoRA r=8": (LoRATraining(rank=8, alpha=16, targets=TARGETS), finetune),
    "P-tuning v2, 16 slots": (PrefixTraining(length=16), TrainSettings(**{**finetune.to_dict(), "lr": 1e-2})),
}
runs = {}
for label, (method, settings) in methods.items():
    runs[label] = train(base.artefact, out=work / label.split()[0].lower(), text=work / "shouted.txt",
                        settings=settings, method=method, progress=False)

# the base model on the new text, before any fine-tuning: the same held-out windows
base_model = archzoo.load_pretrained(base.artefact)
held_out = runs["LoRA r=8"].data.val
before = evaluate(base_model, held_out, seq_len=64, progress=False)
print(f"base model on the held-out capitals: {before.loss:.3f} nats/byte")

# %% [markdown]
# ### Trainable parameters and memory
#
# The trainable counts are checked against the formulas above. The memory of a step is estimated
# by `estimate_memory(cfg, ..., lora_rank=, lora_targets=)` / `prefix_length=` (frozen weights keep no
# gradient and no AdamW moments; frozen linear layers keep less of their input for the backward pass)
# and set beside the measured peak. At this size activations dominate, so the saving is modest;
# for LLaMA-2-7B (last rows) the optimizer state is the bill, and adapters cut it by 99%.

# %%
cfg = base_model.config
d, layers, kv, hd, hidden = cfg.model.d_model, cfg.model.n_layers, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_hidden
shapes = {"q_proj": (cfg.n_heads * hd, d), "k_proj": (kv * hd, d), "v_proj": (kv * hd, d), "o_proj": (d, cfg.n_heads * hd),
          "gate_proj": (hidden, d), "up_proj": (hidden, d), "down_proj": (d, hidden)}
expected = {"LoRA r=8": layers * sum(8 * (o + i) for o, i in shapes.values()),
            "P-tuning v2, 16 slots": 2 * layers * 16 * kv * hd}
full_params = archzoo.count_params(cfg).total
memory = {}
estimate_args = {"LoRA r=8": {"lora_rank": 8, "lora_targets": TARGETS}, "P-tuning v2, 16 slots": {"prefix_length": 16}}
for label, run in runs.items():
    trainable = sum(p.numel() for p in run.model.parameters() if p.requires_grad)
    assert trainable == expected[label], (label, trainable, expected[label])
    estimate = archzoo.estimate_memory(cfg, batch=8, seq_len=64, precision="fp32", **estimate_args[label]).training_step
    measured = run.records[1]["peak_tensor_bytes"]
    memory[label] = (estimate.peak, measured)
    print(f"{label:22s} trainable {trainable:7,d} ({100 * trainable / full_params:4.1f}% of {full_params:,}); "
          f"step peak: estimate {estimate.peak / 1e6:5.2f} MB, measured {measured / 1e6:5.2f} MB")
    assert abs(measured / estimate.peak - 1) < 0.1, (label, measured, estimate.peak)
    results[f"{label.split()[0]}_trainable_params"] = trainable
full = archzoo.estimate_memory(cfg, batch=8, seq_len=64, precision="fp32").training_step
memory["full training"] = (full.peak, base.records[1]["peak_tensor_bytes"])  # the pretraining run: same batch
print(f"{'full training':22s} trainable {full_params:7,d};  step peak: estimate {full.peak / 1e6:5.2f} MB, "
      f"measured {memory['full training'][1] / 1e6:5.2f} MB")

big = {name: archzoo.estimate_memory("llama2-7b", batch=1, seq_len=2048, precision="bf16", **kw).training_step
       for name, kw in {"full training": {}, **estimate_args}.items()}
for name, step in big.items():
    print(f"llama2-7b, bf16 autocast, 1 x 2,048 tokens, {name:22s}: trainable {step.trainable_params / 1e6:8.1f} M, "
          f"optimizer state {step.optimizer_state / 1e9:6.2f} GB, step peak {step.peak / 1e9:6.1f} GB")
assert big["LoRA r=8"].optimizer_state < 0.01 * big["full training"].optimizer_state

# %%
fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.5), gridspec_kw={"width_ratios": [3, 2]})
colours = {"LoRA r=8": "tab:blue", "P-tuning v2, 16 slots": "tab:orange"}
for label, run in runs.items():
    steps = [r["step"] for r in run.records]
    ax.plot(steps, [r["loss"] for r in run.records], color=colours[label], alpha=0.4, label=f"{label}: training")
    evals = [r for r in run.records if "val_loss" in r]
    ax.plot([0] + [r["step"] for r in evals], [before.loss] + [r["val_loss"] for r in evals], "o-",
            color=colours[label], label=f"{label}: held-out")
ax.axhline(before.loss, color="grey", ls=":", label="base model, held-out (no fine-tuning)")
ax.set_xlabel("fine-tuning step (8 x 64 bytes each)")
ax.set_ylabel("cross-entropy (nats per byte)")
ax.set_title("Fine-tuning a Shakespeare model on Shakespeare in capitals")
ax.legend(fontsize=8)
names = list(memory)
x = range(len(names))
bx.bar([i - 0.2 for i in x], [memory[n][0] / 1e6 for n in names], 0.4, label="estimate (estimate_memory)")
bx.bar([i + 0.2 for i in x], [memory[n][1] / 1e6 for n in names], 0.4, label="measured (peak live tensors)")
bx.set_xticks(list(x), names)
bx.set_ylabel("peak bytes of one training step (MB)")
bx.set_title("llama-tiny, fp32, 8 x 64 tokens per step")
bx.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# LoRA changes what every projection computes; a prefix can only add keys and values for the
# sequence to attend to, so it cannot remap the MLPs or the output head that decide which byte
# comes next. With 0.8% of the parameters (LoRA here: 7.5%) it moves the held-out loss much less.

# %%
lora_final = [r for r in runs["LoRA r=8"].records if "val_loss" in r][-1]["val_loss"]
prefix_final = [r for r in runs["P-tuning v2, 16 slots"].records if "val_loss" in r][-1]["val_loss"]
assert lora_final < before.loss - 0.3 and prefix_final < before.loss  # both adapt; LoRA by a wide margin
results.update({"heldout_before": before.loss, "heldout_lora": lora_final, "heldout_prefix": prefix_final})

# %% [markdown]
# ## Merging LoRA
#
# `merge_lora(model)` replaces each adapted weight W by W + (α / r) B A in place. We check the merged
# weight of one layer against that formula computed by hand from the adapter's own tensors, and the
# merged model's logits against the adapted model's. Then the merged model is saved as an ordinary
# Hugging Face checkpoint and loaded back without any adapter code: the same logits again.
#
# **Tolerances.** The hand-computed W + (α / r) B A uses the same float32 operations as the merge,
# so it must be equal to the last bit. The logits differ in the order of operations:
# (W + ΔW) x against W x + B (A x). Each output is a sum of at most 352 products (the MLP width);
# reordering moves it by at most about 352 eps |x| |w| summed, ~4e-5 relative to the logits' scale,
# across 2 layers; we allow 1e-4 x max|logit|.

# %%
model = runs["LoRA r=8"].model.eval()
ids = held_out[: 4 * 64].view(4, 64)
q = model.layers[0].attn.q_proj
by_hand = q.weight.detach().clone() + (q.lora_B.weight @ q.lora_A.weight) * (q.alpha / q.rank)
with torch.no_grad():
    adapted = model(ids)
    archzoo.merge_lora(model)
    merged = model(ids)
assert torch.equal(q.weight, by_hand)
scale = adapted.abs().max().item()
merge_diff = (merged - adapted).abs().max().item()
assert merge_diff <= 1e-4 * scale, (merge_diff, scale)
archzoo.save_pretrained(model, work / "merged")
plain = archzoo.load_pretrained(work / "merged").eval()
assert not any("lora" in name for name, _ in plain.named_parameters())
with torch.no_grad():
    reloaded_diff = (plain(ids) - merged).abs().max().item()
assert reloaded_diff <= 1e-4 * scale
base_diff = (base_model(ids) - adapted).abs().max().item()  # the adapter did change the model
assert base_diff > 100 * 1e-4 * scale
print(f"merged vs adapted logits: {merge_diff:.1e}; reloaded plain checkpoint vs merged: {reloaded_diff:.1e}; "
      f"(base vs adapted: {base_diff:.2f}, max |logit| {scale:.2f})")
results["lora_merged_equals_adapted"] = merge_diff <= 1e-4 * scale

# %% [markdown]
# ## int8 and int4: perplexity against float
#
# `archzoo.quantize(model, mode, group_size)` stores every linear layer's weight as integers with
# scales: int8 per output row, int4 per group of `group_size` inputs (here 32, a quarter of
# d_model 128; LLaMA-sized models use 128 of 4,096) with a minimum per group. The embedding and the
# output head stay float. We evaluate the pretrained model, float and quantized, on the held-out
# Shakespeare (the tail of the pretraining text that training never saw): perplexity =
# exp(mean cross-entropy), and, more sensitive, how far the quantized model's next-byte
# distribution moves from the float one: KL(p_float || p_quant) in nats per byte.
#
# Rounding errors are unbiased, so to first order they cancel in the mean loss: perplexity moves
# with their *square*. The KL divergence and the logit error show the noise itself: int4 has 16
# levels per group where int8 has 256 per row, and its noise is many times int8's.

# %%
shakespeare_val = base.data.val
variants = {"float32": archzoo.load_pretrained(base.artefact)}
for mode in ("int8", "int4"):
    # implementation="reference": blocks/quant.py's dequantize-then-matmul, the form to read beside this
    variants[mode] = archzoo.quantize(archzoo.load_pretrained(base.artefact), mode, group_size=32, implementation="reference")
windows = shakespeare_val[: 16 * 65].view(16, 65)[:, :64]  # 16 held-out windows for the KL
with torch.no_grad():
    reference = variants["float32"](windows).float().log_softmax(-1)
ppl, weight_bytes, kl, logit_rms = {}, {}, {}, {}
for mode, m in variants.items():
    ppl[mode] = evaluate(m, shakespeare_val, seq_len=64, progress=False).perplexity
    weight_bytes[mode] = archzoo.estimate_memory(cfg, group_size=32).weight_bytes["fp32" if mode == "float32" else mode]
    with torch.no_grad():
        logp = m(windows).float().log_softmax(-1)
    kl[mode] = (reference.exp() * (reference - logp)).sum(-1).mean().item()
    logit_rms[mode] = (logp - reference).pow(2).mean().sqrt().item()
    print(f"{mode:8s} perplexity {ppl[mode]:.5f} ({100 * (ppl[mode] / ppl['float32'] - 1):+.4f}%)   "
          f"KL from float {kl[mode]:.2e} nats/byte   weights {weight_bytes[mode] / 1e3:6.1f} kB")
assert abs(ppl["int8"] / ppl["float32"] - 1) < 0.01  # 8 bits per row: the model barely notices
assert abs(ppl["int4"] / ppl["float32"] - 1) < 0.05  # 16 levels per group: still small in perplexity
assert kl["int4"] > 10 * kl["int8"] > 0  # ... but the noise is an order of magnitude larger (KL ~ noise squared)
assert weight_bytes["int4"] < weight_bytes["int8"] < weight_bytes["float32"] / 3
results.update({"ppl_float32": ppl["float32"], "ppl_int8": ppl["int8"], "ppl_int4": ppl["int4"],
                "kl_int4_over_int8": kl["int4"] / kl["int8"], "int4_weight_bytes": int(weight_bytes["int4"])})

fig, (ax, cx, bx) = plt.subplots(1, 3, figsize=(15, 4))
modes = list(ppl)
ax.bar(modes, [ppl[m] for m in modes], color=["tab:grey", "tab:blue", "tab:orange"])
for i, m in enumerate(modes):
    ax.text(i, ppl[m], f"{ppl[m]:.4f}", ha="center", va="bottom", fontsize=9)
ax.set_ylabel("perplexity on held-out Shakespeare (per byte)")
ax.set_title("Perplexity: quantization barely shows")
cx.bar(modes[1:], [kl[m] for m in modes[1:]], color=["tab:blue", "tab:orange"])
cx.set_yscale("log")
cx.set_ylabel("KL(p_float || p_quant) (nats per byte, log scale)")
cx.set_title("How far the next-byte distribution moves")
bx.bar(modes, [weight_bytes[m] / 1e3 for m in modes], color=["tab:grey", "tab:blue", "tab:orange"])
bx.set_ylabel("weight bytes (kB, estimate_memory)")
bx.set_title("What each stores (embedding and head stay float)")
fig.tight_layout()
plt.show()

# %% [markdown]
# At this size the embedding and head (512 x 128 each, kept float) are half of the model, so
# int4 saves less than 8x; on LLaMA-2-7B the same modes store 7.0 GB and 4.0 GB against 13.5 GB in
# bf16 (notebook 07).

# %%
# The fine-tuning losses and perplexities come from trained weights: float32 kernels that sum in
# another order (another CPU's SIMD path) change them in the 6th digit per step and the change
# compounds over 180 steps; 2% covers that with room. The KL ratio is a ratio of two small noisy
# numbers (the int8 KL is ~1e-5 nats): 30%. Counts and booleans are compared exactly.
results_rtol = {"heldout_before": 0.02, "heldout_lora": 0.02, "heldout_prefix": 0.02,
                "ppl_float32": 0.02, "ppl_int8": 0.02, "ppl_int4": 0.02, "kl_int4_over_int8": 0.3}
shutil.rmtree(work)  # the run folders were scratch
print("RESULTS", json.dumps(results))
