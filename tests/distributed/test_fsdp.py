"""FSDP2 training on 2 processes (gloo, localhost) against the same training on one.

One torchrun launch (``sharded_runs.py``) trains every case on 2 processes; this
process trains the same cases on one and compares. What is compared, and why the
tolerance:

* losses, 6 steps, dense / MoE (with its aux loss) / MLA / a 32k vocabulary, same global batch:
  within 1e-5 (float32). Each process sums half the tokens and the halves are added
  (and the gradients reduce-scattered) in another order than one process adds them:
  ~1e-7 relative per step, and AdamW carries that into the next steps' weights; six
  steps stay ~10x under 1e-5 (observed ~3e-7). The 32k vocabulary's head and loss run fused
  on both sides (each process's 64 x 32768 logits reach ``MIN_LOGITS``): its head gradient is
  summed over chunks of rows and over processes, the same float32 reordering.
* the sharded init, gathered, equals the one-process init bit for bit: the same
  draws from the same generator in the same order (``init_by_parts.py``).
* resharding, 2 -> 1 and 1 -> 2 processes from the step-3 checkpoint: steps 4-6 within
  1e-6 of the uninterrupted run on the resuming number of processes: a checkpoint
  holds the exact state, so only the first three steps' ~1e-7 differences remain.
* the exported folders load in transformers with the logits of the gathered model
  (1e-5: the parity tests' tolerance, sums over d_model products in another order).
* the measured peak of live tensor bytes per process is within 15% of
  ``estimate_memory(..., world_size=2)`` (the issue's bound; ``bench_fsdp_memory.py`` for 1, 2, 4).
* LoRA under FSDP: the optimizer holds only adapters, the adapter file is not empty
  and PEFT loading it on the base gives the one-process run's logits.
"""

from __future__ import annotations

import json
import shutil
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sharded_runs import CONFIGS, PROBE, SETTINGS, counting_fused_loss, source
from spawn import torchrun

from archzoo import load_config
from archzoo.models.hf import save_pretrained
from archzoo.train import TrainSettings, resume, train
from archzoo.train.adapter_methods import LoRATraining
from archzoo.train.log import read_log
from archzoo.train.run import build_source_model, describe_source

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(one-process runs, the 2-process folder): every training happens once for the whole module."""
    base = tmp_path_factory.mktemp("fsdp")
    settings = TrainSettings(**SETTINGS)
    one, fused_rows = {}, {}
    for name in CONFIGS:
        with counting_fused_loss() as fused_rows[name]:
            one[name] = train(source(name), out=base / f"{name}-1", settings=settings, progress=False)
    one["fused_loss_rows"] = fused_rows
    train("llama-tiny", out=base / "resumed-1to2", settings=settings, stop_after=3, progress=False)
    lora = LoRATraining(rank=4, alpha=8.0, targets=("q_proj", "v_proj"))
    one["lora"] = train("llama-tiny", out=base / "lora-1", settings=TrainSettings(**SETTINGS, checkpointing=True), method=lora, progress=False)
    one["bf16"] = train("llama-tiny", out=base / "bf16-1", settings=TrainSettings(**SETTINGS, precision="bf16"), progress=False)
    train(base / "llama-tiny-1" / "model", out=base / "finetune-1", settings=settings, progress=False)
    torchrun([str(HERE / "sharded_runs.py"), str(base)], nproc=2, timeout=420)
    return one, base


def losses(folder: Path, key: str = "loss") -> list[float]:
    return [r[key] for r in read_log(folder / "log.jsonl") if key in r]


@pytest.mark.parametrize("name", CONFIGS)
def test_two_processes_log_the_losses_of_one(runs, name):
    one, base = runs
    for key in ("loss", "val_loss", "grad_norm") + (("aux_loss",) if load_config(source(name)).moe else ()):
        a, b = losses(base / f"{name}-1", key), losses(base / f"{name}-2", key)
        assert len(a) == len(b) == (SETTINGS["steps"] if key != "val_loss" else 2), key
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (key, a, b)
    steps = losses(base / f"{name}-1")
    assert steps[0] - steps[-1] > 0.5  # it trained: equal losses are not equal constants


def test_the_wide_vocabulary_ran_the_fused_loss_on_both_sides(runs):
    one, base = runs
    report = json.loads((base / "worker.json").read_text())
    tokens = SETTINGS["batch"] * SETTINGS["seq_len"]
    # one call per training step (evaluation computes its loss without gradients, no autograd function)
    assert one["fused_loss_rows"]["llama-tiny-32k"] == [tokens] * SETTINGS["steps"]
    assert report["fused_loss_rows"]["llama-tiny-32k"] == [tokens // 2] * SETTINGS["steps"]  # half the batch each
    assert not any(one["fused_loss_rows"][name] or report["fused_loss_rows"][name] for name in CONFIGS if name != "llama-tiny-32k")


def test_fine_tuning_a_folder_on_two_processes_logs_the_losses_of_one(runs):
    _, base = runs
    a, b = losses(base / "finetune-1"), losses(base / "finetune-2")
    assert len(a) == len(b) == SETTINGS["steps"] and max(abs(x - y) for x, y in zip(a, b)) < 1e-5, (a, b)
    assert a[0] < losses(base / "llama-tiny-1")[0] - 0.5  # it started from the trained weights


@pytest.mark.parametrize("name", CONFIGS)
def test_sharded_init_is_the_one_process_init(runs, name):
    _, base = runs
    for method in ("full", "lora") if name == "llama-tiny" else ("full",):
        model = build_source_model(describe_source(source(name)), TrainSettings().seed)
        if method == "lora":
            LoRATraining().prepare(model)
        gathered = load_file(base / "init" / f"{name}-{method}.safetensors")
        own = {k: v for k, v in model.state_dict().items() if k in gathered}
        assert set(gathered) <= set(model.state_dict()) and len(gathered) >= len(model.state_dict()) - 1
        assert all(torch.equal(own[k], gathered[k]) for k in gathered), [k for k in gathered if not torch.equal(own[k], gathered[k])]


def test_resume_from_two_processes_on_one(runs):
    _, base = runs
    folder = base / "resumed-2to1"
    shutil.copytree(base / "llama-tiny-2", folder)
    shutil.rmtree(folder / "checkpoints" / "step-000006")
    assert (folder / "checkpoints" / "step-000003" / ".metadata").is_file()  # a DCP checkpoint of 2 processes
    resume(folder, progress=False)
    got, expected = losses(folder)[3:], losses(base / "llama-tiny-1")[3:]
    assert len(got) == 3 and max(abs(x - y) for x, y in zip(got, expected)) < 1e-6, (got, expected)


def test_resume_from_one_process_on_two(runs):
    _, base = runs
    got, expected = losses(base / "resumed-1to2")[3:], losses(base / "llama-tiny-2")[3:]
    assert len(got) == 3 and max(abs(x - y) for x, y in zip(got, expected)) < 1e-6, (got, expected)
    assert (base / "resumed-1to2" / "checkpoints" / "step-000006" / ".metadata").is_file()


@pytest.mark.parametrize("name", CONFIGS)
def test_exported_folder_loads_in_transformers(runs, name):
    import transformers

    _, base = runs
    folder = base / f"{name}-2" / "model"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        got = hf(PROBE).logits
    expected = torch.load(base / f"{name}-2" / "probe_logits.pt")
    assert (got - expected).abs().max() < 1e-5
    assert expected.std() > 0.1  # trained logits, not a constant


def test_lora_under_fsdp_exports_the_adapter(runs):
    import peft
    import transformers

    one, base = runs
    report = json.loads((base / "worker.json").read_text())
    assert report["lora_optimizer"] and all(".lora_A." in n or ".lora_B." in n for n in report["lora_optimizer"])
    adapter = load_file(base / "lora-2" / "adapter" / "adapter_model.safetensors")
    reference = load_file(base / "lora-1" / "adapter" / "adapter_model.safetensors")
    assert sorted(adapter) == sorted(reference) and len(adapter) == 8  # A and B of q and v in 2 layers
    assert all(adapter[k].abs().max() > 0 for k in adapter)  # B trained away from 0: not an empty export
    assert max((adapter[k] - reference[k]).abs().max() for k in adapter) < 1e-5
    base_folder = base / "lora-base"
    save_pretrained(build_source_model(describe_source("llama-tiny"), TrainSettings().seed), base_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
        model = peft.PeftModel.from_pretrained(hf, base / "lora-2" / "adapter").eval()
    with torch.no_grad():
        got, expected = model(PROBE).logits, one["lora"].model.eval()(PROBE)
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("name", CONFIGS)
def test_measured_peak_per_process_is_the_estimate(runs, name):
    from archzoo.inspect import estimate_memory

    _, base = runs
    record = next(r for r in read_log(base / f"{name}-2" / "log.jsonl") if "peak_tensor_bytes" in r)
    assert record["world_size"] == 2
    estimate = estimate_memory(load_config(source(name)), batch=SETTINGS["batch"], seq_len=SETTINGS["seq_len"], world_size=2)
    assert abs(estimate.training_step.peak / record["peak_tensor_bytes"] - 1) < 0.15  # the bound
    one = next(r for r in read_log(base / f"{name}-1" / "log.jsonl") if "peak_tensor_bytes" in r)
    # Sharding saved memory, by at least half of what the estimate says it saves. Not a fixed ratio:
    # the 2-process peak of this run takes one of two values (7.39 or 7.95 MB over six runs here,
    # 0.56 MB apart, with when the other process's collectives finish), which put it once at 0.81x of
    # the 1-process peak; the estimate's saving (2.3 MB) is four times that spread.
    estimate_one = estimate_memory(load_config(source(name)), batch=SETTINGS["batch"], seq_len=SETTINGS["seq_len"])
    saving = estimate_one.training_step.peak - estimate.training_step.peak
    measured_saving = one["peak_tensor_bytes"] - record["peak_tensor_bytes"]
    if name == "llama-tiny-32k":
        # The embedding and head are 96% of this model, and the root unit is gathered whole, with its whole
        # gradients and FSDP2's reduce-scatter copy of them at the backward's end: on 2 processes sharding
        # costs more than it saves. The estimate says so (-5.4 MB, ten times the spread above); so does the run.
        assert saving < 0 and measured_saving < 0.5 * saving, (one, record, saving)
        return
    assert saving > 0
    assert measured_saving > 0.5 * saving, (one, record, saving)


def test_bf16_is_fsdp_mixed_precision(runs):
    one, base = runs
    report = json.loads((base / "worker.json").read_text())
    assert report["shard_dtypes"] == ["torch.float32"] and report["gathered_dtype"] == "torch.bfloat16"
    assert report["optimizer_params"] == report["model_params"]
    a, b = losses(base / "bf16-1"), losses(base / "bf16-2")
    # autocast (one process) and bf16 parameters (FSDP2) round differently: bf16 has 8 bits of
    # mantissa, 4e-3 relative per product; the losses agree to a few times that
    assert max(abs(x - y) / x for x, y in zip(a, b)) < 2e-2, (a, b)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q"]))
