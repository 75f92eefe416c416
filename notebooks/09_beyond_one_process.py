# %% [markdown]
# # 09 · Beyond one process: the same training on 2 processes with FSDP2, and what each process holds
#
# **What you will learn**
#
# - How `archzoo train ... --nproc 2` starts two processes with `torchrun` (gloo on this machine; NCCL on
#   GPUs), and that they train *the same model on the same global batch*: each process computes half the
#   rows, the gradients are averaged, and the loss curve equals one process's to float32 rounding.
# - What fully sharded data parallelism (FSDP2, ZeRO stage 3) keeps in each process: half of every
#   parameter (rows split along dimension 0), half of every gradient and half of AdamW's two moments,
#   read here from the distributed checkpoint (DCP) each process wrote.
# - Why the per-process *peak* halves less than the state does: a layer's weights are gathered whole
#   while it computes.
# - That the finished run exports one ordinary Hugging Face folder (the shards gathered on rank 0), which
#   `transformers` loads with the same logits.
#
# **Read beside it**
#
# - `src/archzoo/train/distributed/launch.py`: `--nproc N` becomes `torchrun --standalone --nproc-per-node N`
# - `src/archzoo/train/distributed/shard.py`: `fully_shard` per decoder layer, then the root
# - `src/archzoo/train/distributed/build.py` and `src/archzoo/train/distributed/init_by_parts.py`: built on
#   `meta`, materialised shard by shard, with the one-process weights
# - `src/archzoo/train/distributed/batch.py`: each process's rows of the global batch
# - `src/archzoo/train/distributed/checkpoint.py`: DCP checkpoints, N processes -> M
# - `src/archzoo/train/distributed/export.py`: the whole model gathered on rank 0 for `save_pretrained`

# %%
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.distributed.checkpoint as dcp
from safetensors import safe_open

import archzoo
from archzoo.train import TrainSettings, train

torch.manual_seed(0)
work = Path(tempfile.mkdtemp(prefix="archzoo-nb09-"))  # everything this notebook writes goes here
results = {}

# %% [markdown]
# ## 1. One process, in this kernel
#
# `llama-tiny` (2 layers, d_model 128, GQA, SwiGLU: 500,352 parameters), 12 AdamW steps of a global batch
# of 4 sequences x 32 bytes of Shakespeare, a validation pass every 4 steps, a checkpoint at the end.

# %%
STEPS, BATCH, SEQ = 12, 4, 32
settings = TrainSettings(steps=STEPS, batch=BATCH, seq_len=SEQ, warmup=2, eval_every=4, eval_batches=2, save_every=STEPS)
one = train("llama-tiny", out=work / "one", settings=settings, progress=False)
print(f"1 process: loss {one.records[0]['loss']:.4f} -> {one.records[-1]['loss']:.4f} in {one.records[-1]['time']:.1f} s")

# %% [markdown]
# ## 2. Two processes, through the command line
#
# The same settings as flags, plus `--nproc 2`. `archzoo` re-runs itself under
# `python -m torch.distributed.run --standalone --nproc-per-node 2`: torchrun finds a free port on
# localhost for the rendezvous, starts two processes with `RANK` 0 and 1 and `WORLD_SIZE` 2, and each
# joins a gloo process group. Rank 0 alone prints, writes the log and exports the model.
#
# A notebook kernel must never hang on a child: the command runs in a session of its own with a
# timeout, and whatever is left of that session (torchrun and both workers) is killed at the end.

# %%
def run_in_own_session(command: list[str], timeout: float = 240) -> str:
    """Run ``command``, return its output; on a timeout or any error kill its whole process group."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise RuntimeError(f"timed out after {timeout} s:\n{output[-3000:]}") from None
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # any worker still alive in the session
        except ProcessLookupError:
            pass
    if process.returncode != 0:
        raise RuntimeError(f"exit status {process.returncode}:\n{output[-3000:]}")
    return output


command = [sys.executable, "-m", "archzoo", "train", "llama-tiny", "--nproc", "2", "--out", str(work / "two"),
           "--steps", str(STEPS), "--batch", str(BATCH), "--seq-len", str(SEQ), "--warmup", "2", "--eval-every", "4",
           "--eval-batches", "2", "--save-every", str(STEPS), "--sample-tokens", "0", "--no-progress"]  # fmt: skip
start = time.perf_counter()
print(run_in_own_session(command))
print(f"(the whole command, two Python processes started and joined, took {time.perf_counter() - start:.0f} s)")
two = [json.loads(line) for line in (work / "two" / "log.jsonl").read_text().splitlines()]
assert two[1]["world_size"] == 2  # the log says it ran on two processes

# %% [markdown]
# ## 3. The same losses
#
# Each process computes the loss of its 2 rows; the two halves are averaged, and FSDP2 reduce-scatters the
# gradients so that each process ends with the average gradient of the whole batch for *its* half of each
# parameter. Mathematically that is one process's step. In float32 the sums are taken in another order
# (two halves added, then the gradients reduced) which moves each step by about 1e-7 relative; AdamW
# carries that into the next weights, and over a dozen steps it stays well under 1e-5, the bar issue 17
# sets for "the same training".

# %%
loss_1 = [r["loss"] for r in one.records]
loss_2 = [r["loss"] for r in two]
val_1 = [(r["step"], r["val_loss"]) for r in one.records if "val_loss" in r]
val_2 = [(r["step"], r["val_loss"]) for r in two if "val_loss" in r]
max_diff = max(abs(a - b) for a, b in zip(loss_1 + [v for _, v in val_1], loss_2 + [v for _, v in val_2], strict=True))
print(f"{len(loss_1)} steps; largest |loss(1 process) - loss(2 processes)| = {max_diff:.2e} nats")
assert len(loss_1) == len(loss_2) == STEPS and max_diff < 1e-5
assert loss_1[0] - loss_1[-1] > 1.0  # it trained: equal losses are not two equal constants
results.update({"max_loss_diff_below_1e-5": max_diff < 1e-5, "final_loss_1": loss_1[-1], "final_loss_2": loss_2[-1]})

fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.8))
steps = list(range(1, STEPS + 1))
ax.plot(steps, loss_1, "o-", lw=3, alpha=0.5, label="1 process (train() in this kernel)")
ax.plot(steps, loss_2, "x--", color="black", label="2 processes (archzoo train --nproc 2)")
ax.plot(*zip(*val_1, strict=True), "s", ms=10, alpha=0.5, color="tab:green", label="validation, 1 process")
ax.plot(*zip(*val_2, strict=True), "+", ms=12, color="tab:red", label="validation, 2 processes")
ax.set_xlabel(f"optimizer step (global batch {BATCH} x {SEQ} bytes)")
ax.set_ylabel("cross-entropy (nats per byte)")
ax.set_title("llama-tiny: the same training on 1 and on 2 processes")
ax.legend()
bx.semilogy(steps, [max(abs(a - b), 1e-10) for a, b in zip(loss_1, loss_2, strict=True)], "o-", label="|difference| (0 drawn at 1e-10)")
bx.axhline(1e-5, color="tab:red", ls="--", label="1e-5 (the bar for equal)")
bx.set_xlabel("optimizer step")
bx.set_ylabel("|loss difference| (nats per byte)")
bx.set_title("1 process vs 2: float32 rounding only")
bx.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 4. What each process holds, read from its checkpoint
#
# A multi-process run saves a DCP checkpoint: each process writes *its own* shards to its own file
# (`__0_0.distcp`, `__1_0.distcp`), in parallel, and `.metadata` records which slice of which tensor
# lies in which file. So the checkpoint is a faithful picture of what each process held: we read it with
# PyTorch's own `FileSystemReader`, nothing of archzoo's. (A one-process checkpoint is plain safetensors
# for the weights plus AdamW's state dict in `trainer.pt`.)

# %%
ckpt_2 = work / "two" / "checkpoints" / f"step-{STEPS:06d}"
ckpt_1 = work / "one" / "checkpoints" / f"step-{STEPS:06d}"
print(sorted(p.name for p in ckpt_2.iterdir()))
meta = dcp.FileSystemReader(str(ckpt_2)).read_metadata()

chunk_numel = {}  # (fqn, offsets) -> elements of that chunk
for fqn, info in meta.state_dict_metadata.items():
    for chunk in getattr(info, "chunks", []):  # tensors; param_groups etc. are pickled bytes
        chunk_numel[fqn, tuple(chunk.offsets)] = math.prod(chunk.sizes)
held = {0: {}, 1: {}}  # rank -> fqn -> elements in that rank's file
rows = {0: {}, 1: {}}  # rank -> fqn -> first row of its slice
for index, storage in meta.storage_data.items():
    if index.offset is None:  # pickled bytes (param_groups), not a tensor chunk
        continue
    rank = int(storage.relative_path.split("_")[2])  # "__<rank>_<file>.distcp"
    held[rank][index.fqn] = held[rank].get(index.fqn, 0) + chunk_numel[index.fqn, tuple(index.offset)]
    rows[rank][index.fqn] = index.offset[0] if len(index.offset) else 0

weights = [k for k in meta.state_dict_metadata if k.startswith("model.")]
whole = {k: math.prod(meta.state_dict_metadata[k].size) for k in weights}
print(f"{'tensor':36s} {'whole shape':>12s} {'rank 0':>18s} {'rank 1':>18s}")
for k in ["model.embed.weight", "model.layers.0.attn.q_proj.weight", "model.layers.0.attn.k_proj.weight",
          "model.layers.0.mlp.gate_proj.weight", "model.layers.0.attn_norm.weight", "model.lm_head.weight"]:  # fmt: skip
    size = tuple(meta.state_dict_metadata[k].size)
    n0 = size[0] // 2
    cells = [f"rows {rows[r][k]:>3d}..{rows[r][k] + n0 - 1:<3d} ({held[r][k]:,})" for r in (0, 1)]
    print(f"{k[len('model.'):]:36s} {str(size):>12s} {cells[0]:>18s} {cells[1]:>18s}")

total = archzoo.count_params(archzoo.load_config("llama-tiny")).total
per_rank = {r: sum(held[r].get(k, 0) for k in weights) for r in (0, 1)}
print(f"parameters: whole model {total:,}; rank 0 holds {per_rank[0]:,}, rank 1 holds {per_rank[1]:,}")
# every dimension 0 of llama-tiny (512, 128, 64, 352) is even, so FSDP2's split is exactly half
assert sum(whole.values()) == total and per_rank[0] == per_rank[1] == total // 2
assert all(held[0][k] + held[1][k] == whole[k] for k in weights)  # the two halves make each tensor, no overlap
results.update(params_whole=total, params_rank0=per_rank[0], params_rank1=per_rank[1])

# %% [markdown]
# The same for AdamW: its two moments (`exp_avg`, `exp_avg_sq`) are tensors of the parameter's shape, so
# FSDP2 shards them with the parameter; only the step counters (one scalar per parameter) are whole.

# %%
def state_bytes_two(rank: int) -> dict[str, int]:
    """Bytes of parameters and of AdamW state in ``rank``'s file of the 2-process checkpoint (float32)."""
    params = sum(n for k, n in held[rank].items() if k.startswith("model."))
    optim = sum(n for k, n in held[rank].items() if k.startswith("optimizer.state."))
    return {"parameters": 4 * params, "AdamW state": 4 * optim}


def state_bytes_one() -> dict[str, int]:
    """The same for the one-process checkpoint: safetensors weights, AdamW's state dict."""
    with safe_open(ckpt_1 / "model.safetensors", "pt") as f:
        params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    optimizer = torch.load(ckpt_1 / "trainer.pt", weights_only=True)["optimizer"]
    optim = sum(t.numel() for state in optimizer["state"].values() for t in state.values() if torch.is_tensor(t))
    return {"parameters": 4 * params, "AdamW state": 4 * optim}


holdings = {"1 process": state_bytes_one(), "2 processes, rank 0": state_bytes_two(0), "2 processes, rank 1": state_bytes_two(1)}
for who, parts in holdings.items():
    print(f"{who:20s} " + ", ".join(f"{k} {v / 2**20:.3f} MiB" for k, v in parts.items()))
n_tensors = len(weights)
# moments: 2 x params, sharded; steps: one whole float32 scalar per parameter tensor, in some process's file
assert holdings["1 process"]["AdamW state"] == 4 * (2 * total + n_tensors)
both = holdings["2 processes, rank 0"]["AdamW state"] + holdings["2 processes, rank 1"]["AdamW state"]
assert both == holdings["1 process"]["AdamW state"]
results["adamw_bytes_1"] = holdings["1 process"]["AdamW state"]
results["adamw_bytes_rank0"] = holdings["2 processes, rank 0"]["AdamW state"]

# %% [markdown]
# ## 5. Bytes per process, estimated and measured
#
# Gradients are not in a checkpoint, but FSDP2 gives each parameter's gradient that parameter's
# sharding (the reduce-scatter writes each process only its half), so a process holds as many gradient
# bytes as parameter bytes. `archzoo.estimate_memory(..., world_size=N)` writes the bill of one training
# step per process from the config alone: parameters, gradients and AdamW state divided by N, plus what
# FSDP2 gathers whole while computing and the activations of the process's B/N sequences. We check its
# state figures against the checkpoints, byte for byte, and its peak against the peak of live tensors the
# run's log reports for step 2 (the first with AdamW's state; the largest over the processes).
#
# The state halves; the peak does not. While a decoder layer computes, its weights are all-gathered whole
# (and the next layer's are prefetched), and the root unit (embedding and head, a quarter of this tiny
# model) stays gathered from the forward to the end of the backward. At this size those gathered copies and
# the activations (the gap between a bar and its peak line in the figure) are most of the peak. Sharding
# pays when the state dominates: billions of parameters, where AdamW alone is 8 bytes each (last lines).

# %%
cfg = archzoo.load_config("llama-tiny")
estimate = {n: archzoo.estimate_memory(cfg, batch=BATCH, seq_len=SEQ, precision="fp32", world_size=n).training_step for n in (1, 2)}
measured_peak = {1: one.records[1]["peak_tensor_bytes"], 2: two[1]["peak_tensor_bytes"]}
checkpoint_of = {1: holdings["1 process"], 2: holdings["2 processes, rank 0"]}
for n in (1, 2):
    e, c = estimate[n], checkpoint_of[n]
    print(f"{n} process{'es' if n > 1 else '':2s}: parameters {e.weights / 2**20:.3f} MiB (checkpoint {c['parameters'] / 2**20:.3f}), "
          f"gradients {e.gradients / 2**20:.3f}, AdamW {e.optimizer_state / 2**20:.3f} (checkpoint {c['AdamW state'] / 2**20:.3f}), "
          f"gathered {e.gathered / 2**20:.3f}; peak: estimate {e.peak / 2**20:.2f} MiB, measured {measured_peak[n] / 2**20:.2f} MiB")
    assert e.weights == c["parameters"] and e.gradients == e.weights  # the parameter shard, byte for byte
    assert 0 <= c["AdamW state"] - e.optimizer_state <= 4 * n_tensors  # the moments; the step scalars aside
    assert abs(measured_peak[n] / e.peak - 1) < 0.15, (n, measured_peak[n], e.peak)  # issue 17's bar: 15%
state = {n: estimate[n].weights + estimate[n].gradients + estimate[n].optimizer_state for n in (1, 2)}
assert state[2] == state[1] / 2 and estimate[2].peak > 0.5 * estimate[1].peak  # the state halves, the peak does not
results.update({"estimate_peak_1": estimate[1].peak, "estimate_peak_2": estimate[2].peak,
                "peak_bytes_1": measured_peak[1], "peak_bytes_2": measured_peak[2]})

big = {n: archzoo.estimate_memory("llama2-7b", batch=8, seq_len=2048, precision="bf16", world_size=n).training_step for n in (1, 8)}
for n, e in big.items():
    print(f"llama2-7b, bf16, 8 x 2,048 tokens, {n} process{'es' if n > 1 else '':2s}: state "
          f"{(e.weights + e.gradients + e.optimizer_state) / 2**30:6.1f} GiB, peak {e.peak / 2**30:6.1f} GiB per process")
assert big[8].peak < 0.25 * big[1].peak  # at scale the state is the bill, and sharding cuts it

fig, ax = plt.subplots(figsize=(10, 4.5))
kinds = {"parameters": "tab:blue", "gradients": "tab:orange", "AdamW state": "tab:green", "gathered while computing": "lightgrey"}
columns = {"1 process": 1, "2 processes, rank 0": 2, "2 processes, rank 1": 2}
for i, (who, n) in enumerate(columns.items()):
    e = estimate[n]
    parts = {"parameters": holdings[who]["parameters"], "gradients": e.gradients,
             "AdamW state": holdings[who]["AdamW state"], "gathered while computing": e.gathered}
    bottom = 0.0
    for kind, color in kinds.items():
        ax.bar(i, parts[kind] / 2**20, 0.5, bottom=bottom, color=color, hatch="//" if kind == "gathered while computing" else None,
               label=kind if i == (1 if kind == "gathered while computing" else 0) else None)
        bottom += parts[kind] / 2**20
    ax.plot([i - 0.3, i + 0.3], [e.peak / 2**20] * 2, "k--", lw=2, label="estimated peak of a step" if i == 0 else None)
    ax.plot([i - 0.3, i + 0.3], [measured_peak[n] / 2**20] * 2, "r-", lw=2, label="measured peak (largest process)" if i == 0 else None)
ax.set_xticks(range(3), list(columns))
ax.set_ylim(0, 1.35 * max(measured_peak.values()) / 2**20)
ax.set_ylabel("bytes held by one process (MiB)")
ax.set_title("llama-tiny, fp32 AdamW: what each process holds\n(parameters and AdamW state read from its checkpoint; "
             "gradients and gathered weights from estimate_memory)", fontsize=10)
ax.legend(loc="upper right", ncol=2, fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 6. One Hugging Face folder at the end
#
# When the run finishes, every process takes part in gathering the whole weights, one tensor at a time,
# onto rank 0's CPU; rank 0 builds a plain model and writes `two/model` with `save_pretrained`. It is an
# ordinary checkpoint: `transformers` loads it as a `LlamaForCausalLM` and computes archzoo's logits, and
# they are the logits of the one-process run's model too.
#
# **Tolerances.** transformers against archzoo on the same weights: the parity tests' 1e-5 (float32 sums
# of at most 352 products in another order). The 2-process model against the 1-process one: their weights
# differ by the float32 reordering of section 3 (about 1e-7 relative per step, compounded over 12 AdamW
# steps); measured here below 1e-5, and we allow 1e-4 as the weights may differ in their last bits
# wherever AdamW divides by a near-zero second moment.

# %%
import logging  # noqa: E402
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm's notebook bars need ipywidgets
import transformers  # noqa: E402

# transformers imports torchao where it is installed; its CUDA kernels cannot load on a CPU-only torch and say so
for noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(noisy).setLevel(logging.ERROR)

transformers.utils.logging.disable_progress_bar()
folder = work / "two" / "model"
print(sorted(p.name for p in folder.iterdir()))
hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
ours = archzoo.load_pretrained(folder).eval()
x = torch.arange(48).reshape(2, 24) * 7 % 256
with torch.no_grad():
    logits_hf, logits_ours, logits_one = hf(x).logits, ours(x), one.model.eval()(x)
hf_vs_ours = (logits_hf - logits_ours).abs().max().item()
two_vs_one = (logits_ours - logits_one).abs().max().item()
print(f"{type(hf).__name__}: max |logit difference| transformers vs archzoo {hf_vs_ours:.1e}, "
      f"2-process export vs 1-process model {two_vs_one:.1e} (logits up to {logits_one.abs().max().item():.1f})")
assert hf_vs_ours < 1e-5 and two_vs_one < 1e-4
assert logits_one.std() > 0.1  # trained logits, not a constant
results.update(hf_logits_match=hf_vs_ours < 1e-5, export_matches_one_process=two_vs_one < 1e-4)

# %%
# trained losses: float32 kernels differ across CPUs' SIMD paths and 12 steps carry the difference; 1e-3
# is far below the 2.6-nat drop the run shows. One process's peak of live tensors was the same byte count on
# every run here; 2% leaves room for another CPU's attention kernel and its scratch. The 2-process peak takes
# one of two values from run to run (7,392,656 or 7,950,736 bytes over 6 runs on this machine, 7.5% apart,
# both within 15% of the estimate): whether a 0.53 MiB buffer is still alive at the peak depends on when the
# other process's collectives complete. 10% covers both.
results_rtol = {"final_loss_1": 1e-3, "final_loss_2": 1e-3, "peak_bytes_1": 0.02, "peak_bytes_2": 0.1}
print("RESULTS", json.dumps(results))
