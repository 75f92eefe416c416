"""``estimate_memory`` with LoRA and prefixes: adapter counts from their equations, and the
estimated peak of a training step against the live tensor bytes the step really holds."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.train import TrainSettings
from archzoo.train.adapter_methods import LoRATraining, PrefixTraining
from archzoo.train.data import Split
from archzoo.train.loop import Trainer
from archzoo.train.memory import TensorMemory


def test_adapter_parameters_follow_their_equations():
    cfg = archzoo.load_config("llama-tiny")  # d 128, 4 heads / 2 kv heads of 32, 2 layers
    d, kv, layers = 128, 2 * 32, 2
    lora = archzoo.estimate_memory(cfg, batch=1, seq_len=8, lora_rank=8).training_step
    assert lora.trainable_params == layers * 8 * ((d + d) + (d + kv))  # r (in + out) for q_proj and v_proj
    prefix = archzoo.estimate_memory(cfg, batch=1, seq_len=8, prefix_length=16).training_step
    assert prefix.trainable_params == 16 * layers * 2 * kv  # P x layers x (key + value) x kv width
    full = archzoo.estimate_memory(cfg, batch=1, seq_len=8).training_step
    assert lora.weights == full.weights + 4 * lora.trainable_params  # the base's weights stay, in fp32
    assert lora.optimizer_state == 2 * 4 * lora.trainable_params  # AdamW moments for the adapters only


def measured_peak(name: str, method, batch: int, seq_len: int, checkpointing: bool, precision: str = "fp32") -> int:
    torch.manual_seed(0)
    model = archzoo.build_model(name)
    method.prepare(model)
    vocab = model.config.model.vocab_size
    data = Split(train=torch.randint(0, vocab, (4000,)), val=torch.randint(0, vocab, (500,)))
    settings = TrainSettings(steps=3, batch=batch, seq_len=seq_len, checkpointing=checkpointing, precision=precision,
                             eval_every=0, save_every=0)
    trainer = Trainer(model, data, settings, method=method)
    trainer.train_step()  # AdamW's moments exist from the second step on
    with TensorMemory().track_training(trainer.model, trainer.optimizer) as memory:
        trainer.train_step()
    return memory.peak


@pytest.mark.parametrize(
    "name, method, estimate, checkpointing",
    [
        ("llama-tiny", LoRATraining(8, 16), dict(lora_rank=8), False),
        ("llama-tiny", LoRATraining(8, 16), dict(lora_rank=8), True),
        ("bloom-tiny", LoRATraining(4, 8, ("q_proj", "o_proj", "down_proj")), dict(lora_rank=4, lora_targets=("q_proj", "o_proj", "down_proj")), False),
        ("llama-tiny", PrefixTraining(16), dict(prefix_length=16), False),
        ("qwen2-tiny", PrefixTraining(8), dict(prefix_length=8), True),
    ],
    ids=["lora", "lora-checkpointing", "bloom-lora-o-down", "prefix", "qwen2-prefix-checkpointing"],
)
def test_estimated_peak_is_within_15_percent_of_the_measured_one(name, method, estimate, checkpointing):
    batch, seq_len = 4, 128
    peak = measured_peak(name, method, batch, seq_len, checkpointing)
    est = archzoo.estimate_memory(name, batch=batch, seq_len=seq_len, checkpointing=checkpointing, **estimate).training_step
    assert abs(est.peak / peak - 1) < 0.15, (est.peak, peak, est.peak_at)


@pytest.mark.parametrize("name", ["llama-tiny", "qwen3-tiny", "bloom-tiny", "glm-tiny", "qwen2-moe-tiny", "qwen3-moe-tiny"])
def test_the_adapter_estimate_holds_on_every_block_kind(name):
    """LoRA and a prefix, fp32 and bf16, with and without checkpointing, at archzoo train's default
    16 x 128 tokens, where a tiny model's activations are most of the step: measured within 9% on each
    (qk-norm, LayerNorm, GeLU, DeepNorm, MoE with shared experts; the frozen sublayers' terms are checked
    to the byte in tests/train/test_saved_activations.py); the issue's bar is 15%."""
    batch, seq_len = 16, 128
    for method, estimate in ((LoRATraining(8, 16), dict(lora_rank=8)), (PrefixTraining(16), dict(prefix_length=16))):
        for precision in ("fp32", "bf16"):
            for checkpointing in (False, True):
                peak = measured_peak(name, method, batch, seq_len, checkpointing, precision)
                est = archzoo.estimate_memory(name, batch=batch, seq_len=seq_len, checkpointing=checkpointing,
                                              precision=precision, **estimate).training_step  # fmt: skip
                assert abs(est.peak / peak - 1) < 0.15, (type(method).__name__, precision, checkpointing, est.peak, peak)
