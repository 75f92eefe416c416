"""Measured tensor memory counts what is allocated, and estimate_memory's step figure matches it."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.config import Config
from archzoo.train import Split, Trainer, TrainSettings
from archzoo.train.memory import TensorMemory


def test_tensor_memory_counts_each_storage_once_until_it_is_freed():
    with TensorMemory() as mem:
        a = torch.ones(1000)  # 4000 bytes
        view = a[:10]  # shares a's storage: nothing new
        b = torch.ones(500, dtype=torch.float64)  # 4000 bytes
        del b
        c = torch.ones(250)  # 1000 bytes, after b is gone
    assert mem.peak == 8000 and mem.current == 5000
    del a, view, c


def small_llama(vocab=2048, d=128, layers=2, hidden=352) -> Config:
    data = archzoo.load_config("llama-tiny").to_dict()
    data["model"].update(vocab_size=vocab, d_model=d, n_layers=layers)
    data["mlp"] = {"hidden": hidden}
    return Config.from_dict(data)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-pure"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_estimate_memory_predicts_the_measured_peak_of_a_step(precision, checkpointing):
    """The issue's bar is 15%; the model counts archzoo's tensors one by one, so it lands far closer.
    Three configs: one where the logits dominate (vocab 2048), one where the layers do (long sequences),
    and one whose 4 x 64 x 8192 = 2^21 logits reach the fused loss's threshold in fp32
    (``fast/next_token_loss.py``: no logits, the head's gradient and a chunk buffer instead)."""
    configs = ((small_llama(), 4, 64), (small_llama(vocab=512, layers=3), 2, 256), (small_llama(vocab=8192), 4, 64))
    for cfg, batch, seq in configs:
        torch.manual_seed(0)
        model = archzoo.build_model(cfg)
        ids = torch.randint(0, cfg.model.vocab_size, (4000,))
        settings = TrainSettings(steps=3, batch=batch, seq_len=seq, precision=precision, checkpointing=checkpointing, val_fraction=0.0)
        trainer = Trainer(model, Split(ids, ids[:0]), settings)
        trainer.train_step()  # AdamW's moments exist from here on
        with TensorMemory().track_training(model, trainer.optimizer) as mem:
            trainer.train_step()
        estimate = archzoo.estimate_memory(cfg, batch=batch, seq_len=seq, precision=precision, checkpointing=checkpointing)
        assert estimate.training_step.peak == pytest.approx(mem.peak, rel=0.15), (cfg.model.vocab_size, estimate.training_step)
        fused = "chunk_buffer" in model.next_token_loss.__dict__
        assert fused == (precision in ("fp32", "bf16") and cfg.model.vocab_size == 8192)
        assert (estimate.training_step.workspace > 0) == fused  # the estimate knows which loss ran


@pytest.mark.parametrize(
    "name", ["llama-tiny", "qwen3-tiny", "bloom-tiny", "chatglm2-tiny", "glm-tiny", "deepseek-tiny", "qwen2-moe-tiny"]
)
def test_estimate_memory_predicts_every_block_kind_where_activations_dominate(name):
    """One config per kind of block (RMSNorm / LayerNorm and an embedding norm, qk-norm, partial and 2D
    RoPE, ALiBi, GeLU, DeepNorm, multi-head latent attention with a low-rank query, MoE with shared
    experts and a sigmoid gate) at archzoo train's default 16 x 128 tokens, where a tiny model's
    activations are most of the step: each tensor the estimate misses shows. The model counts what
    each block keeps tensor by tensor, and leaves out only the per-layer float copy SDPA makes of the
    boolean mask (4 s^2 bytes a layer, under 1% here), per-row statistics of the attention's norms and
    the group-limited router's scores: measured within 6% on every config and precision (it was off by
    up to 26% before the MLA, MoE, LayerNorm, qk-norm and backward working-set terms), so 10% catches
    any one term gone missing (each of those alone moved some config here by 5-26%)."""
    cfg = archzoo.load_config(name)
    ids = torch.randint(0, cfg.model.vocab_size, (8000,), generator=torch.Generator().manual_seed(0))
    for precision in ("fp32", "bf16", "bf16-pure"):
        for checkpointing in (False, True):
            torch.manual_seed(0)
            model = archzoo.build_model(cfg)
            settings = TrainSettings(steps=3, batch=16, seq_len=128, precision=precision, checkpointing=checkpointing,
                                     val_fraction=0.0)
            trainer = Trainer(model, Split(ids, ids[:0]), settings)
            trainer.train_step()
            with TensorMemory().track_training(model, trainer.optimizer) as mem:
                trainer.train_step()
            estimate = archzoo.estimate_memory(cfg, batch=16, seq_len=128, precision=precision, checkpointing=checkpointing)
            assert estimate.training_step.peak == pytest.approx(mem.peak, rel=0.10), (precision, checkpointing, estimate.training_step)
