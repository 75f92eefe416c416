"""The 2-process side of ``test_fsdp.py``, run by torchrun: ``sharded_runs.py BASE``.

One launch does everything that needs several processes (each launch costs seconds
of process start-up on a small machine); the test compares the files it leaves in
BASE with one-process runs made in the test's own process:

    BASE/<config>-2/        6 steps of training on 2 processes (checkpoints at 3 and 6)
                            (llama-tiny-32k: its logits take the fused loss, ``fast/next_token_loss.py``)
    BASE/resumed-1to2/      a copy of a 1-process run stopped at step 3, resumed here
    BASE/finetune-2/        fine-tuning the 1-process run's Hugging Face folder
    BASE/lora-2/            LoRA with activation checkpointing, its adapter exported
    BASE/bf16-2/            --precision bf16 (FSDP2's MixedPrecisionPolicy)
    BASE/init/<config>.safetensors   the sharded init gathered whole, before any step
    BASE/worker.json        what only the processes can see (dtypes, optimizer contents)
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from archzoo.fast import next_token_loss
from archzoo.train import TrainSettings, resume, train
from archzoo.train.adapter_methods import LoRATraining
from archzoo.train.distributed import init_distributed
from archzoo.train.distributed.build import build_sharded
from archzoo.train.methods import FullTraining
from archzoo.train.run import describe_source

CONFIGS = ("llama-tiny", "qwen2-moe-tiny", "deepseek-v2-tiny", "llama-tiny-32k")  # dense, MoE with aux loss, MLA + MoE, fused loss
SETTINGS = dict(steps=6, batch=4, seq_len=32, warmup=2, eval_every=3, eval_batches=2, save_every=3, keep_checkpoints=2)
PROBE = torch.arange(24).reshape(2, 12) * 7 % 500  # token ids whose logits the export test compares


def source(name: str) -> str:
    """What ``train`` and ``load_config`` take for a name of CONFIGS: a shipped name, or this folder's toml."""
    own = Path(__file__).parent / f"{name}.toml"
    return str(own) if own.is_file() else name


@contextmanager
def counting_fused_loss():
    """A list that gets one entry per call of the fused head cross-entropy while the block runs."""
    calls, apply = [], next_token_loss.HeadCrossEntropy.apply

    def counted(*args):
        calls.append(args[0].shape[0])  # the rows this process computed
        return apply(*args)

    next_token_loss.HeadCrossEntropy.apply = counted
    try:
        yield calls
    finally:
        next_token_loss.HeadCrossEntropy.apply = apply


def main(base: Path) -> None:
    env = init_distributed()
    report: dict = {}
    settings = TrainSettings(**SETTINGS)
    for name in CONFIGS:
        for method in (FullTraining(), LoRATraining()) if name == "llama-tiny" else (FullTraining(),):
            model = build_sharded(describe_source(source(name)), settings.seed, method, env, "fp32")
            full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if env.is_main:
                (base / "init").mkdir(exist_ok=True)
                save_file({k: v.contiguous() for k, v in full.items() if k != "lm_head.weight" or not model.config.model.tie_embeddings},
                          str(base / "init" / f"{name}-{method.name}.safetensors"))
        with counting_fused_loss() as calls:
            result = train(source(name), out=base / f"{name}-2", settings=settings, progress=False)
        report.setdefault("fused_loss_rows", {})[name] = calls
        if env.is_main:
            with torch.no_grad():
                torch.save(result.model(PROBE), base / f"{name}-2" / "probe_logits.pt")
    resume(base / "resumed-1to2", progress=False)
    train(base / "llama-tiny-1" / "model", out=base / "finetune-2", settings=settings, progress=False)
    lora = LoRATraining(rank=4, alpha=8.0, targets=("q_proj", "v_proj"))
    train("llama-tiny", out=base / "lora-2", settings=TrainSettings(**SETTINGS, checkpointing=True), method=lora, progress=False,
          on_start=lambda trainer: report.update(lora_optimizer=trainer.parameter_names))
    bf16 = train("llama-tiny", out=base / "bf16-2", settings=TrainSettings(**SETTINGS, precision="bf16"), progress=False,
                 on_start=lambda trainer: report.update(optimizer_dtypes(trainer)))
    del bf16
    if env.is_main:
        (base / "worker.json").write_text(json.dumps(report))


def optimizer_dtypes(trainer) -> dict:
    """What FSDP2's mixed precision holds: float32 shards (master weights), bfloat16 for the compute."""
    gathered = []
    layer = trainer.model.layers[0]
    hook = layer.register_forward_pre_hook(lambda module, args: gathered.append(str(module.attn.q_proj.weight.dtype)))
    trainer.model(torch.zeros(1, 4, dtype=torch.long))
    hook.remove()
    return {
        "shard_dtypes": sorted({str(p.dtype) for p in trainer.parameters}),
        "gathered_dtype": gathered[0],
        "optimizer_params": sum(len(g["params"]) for g in trainer.optimizer.param_groups),
        "model_params": sum(1 for _ in trainer.model.parameters()),
    }


if __name__ == "__main__":
    main(Path(sys.argv[1]))
