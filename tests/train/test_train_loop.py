"""The loop trains, accumulates, balances MoE routers, checkpoints layers and runs in bf16 as documented."""

from __future__ import annotations

import math

import pytest
import torch

import archzoo
import tolerances as tol
from archzoo.train import Split, Trainer, TrainSettings, set_activation_checkpointing
from archzoo.train.loop import next_token_loss

PATTERN = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6] * 60)


def tiny_trainer(name="llama-tiny", seed=0, **overrides) -> Trainer:
    torch.manual_seed(seed)
    model = archzoo.build_model(name)
    settings = TrainSettings(**{"steps": 10, "batch": 4, "seq_len": 16, "warmup": 2, "lr": 1e-2, **overrides})
    return Trainer(model, Split(PATTERN[:400], PATTERN[400:]), settings)


def test_a_tiny_model_learns_a_repeating_pattern():
    trainer = tiny_trainer(steps=30)
    records = [trainer.train_step() for _ in range(30)]
    assert records[0]["loss"] > 0.8 * math.log(512)  # starts near a uniform guess over 512 tokens
    assert records[-1]["loss"] < 0.25 * records[0]["loss"]
    assert trainer.evaluate() < 0.25 * records[0]["loss"]  # and on the held-out tail
    assert [r["step"] for r in records] == list(range(1, 31)) and records[-1]["tokens"] == 30 * 4 * 16


def test_accumulating_two_half_batches_is_one_full_batch():
    """Same windows (the sampler reads them in the same order either way), same mean loss and gradient."""
    whole = tiny_trainer(batch=8, accumulate=1).train_step()
    halves = tiny_trainer(batch=4, accumulate=2).train_step()
    # mean of two float32 means of 64 terms vs one mean of 128: differ by rounding, ~128 * 6e-8 relative
    assert math.isclose(whole["loss"], halves["loss"], rel_tol=1e-5)
    assert math.isclose(whole["grad_norm"], halves["grad_norm"], rel_tol=1e-4)


def test_only_matrices_are_decayed():
    trainer = tiny_trainer()
    decayed, plain = trainer.optimizer.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])  # RMSNorm gains


def test_training_a_deepseek_v3_style_model_moves_the_router_bias():
    """Aux-loss-free balancing (DeepSeek-V3): after each step every correction bias moves
    by +-rate per expert, against that step's loads; the main loss still trains."""
    trainer = tiny_trainer("deepseek-tiny", batch=2)
    biases = [b for n, b in trainer.model.named_buffers() if n.endswith("e_score_correction_bias")]
    assert biases and all(torch.equal(b, torch.zeros_like(b)) for b in biases)
    rate = trainer.model.config.moe.bias_update_rate
    for _ in range(3):
        trainer.train_step()
    for bias in biases:
        steps_taken = bias / rate  # each step adds -1, 0 or +1 per expert
        # 3 float32 additions of +-rate and a division: 4 roundings of a value of at most 3 steps
        assert torch.allclose(steps_taken, steps_taken.round(), rtol=0, atol=tol.fp32_rounding(4, 3.0))
        assert steps_taken.abs().max() <= 3 + 1e-4 and bias.abs().sum() > 0


def test_qwen_moe_logs_its_aux_loss():
    record = tiny_trainer("qwen2-moe-tiny", batch=2).train_step()
    assert record["aux_loss"] > 0


@pytest.mark.parametrize("name", ["llama-tiny", "deepseek-tiny"])
def test_activation_checkpointing_gives_the_same_gradients(name):
    """Recomputation runs the same float32 ops on the same inputs, so the gradients are bit-identical."""
    torch.manual_seed(0)
    model = archzoo.build_model(name)
    ids = PATTERN[:33].view(1, 33)
    grads = []
    for enabled in (False, True):
        set_activation_checkpointing(model, enabled)
        model.zero_grad()
        next_token_loss(model(ids[:, :-1]), ids[:, 1:]).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for key in grads[0]:
        assert torch.equal(grads[0][key], grads[1][key]), key


def test_checkpointing_keeps_fewer_tensors_for_backward():
    """Counted by autograd's saved-tensor hooks: only layer inputs (plus the head) survive the forward."""
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    ids = PATTERN[:65].view(1, 65)
    saved_bytes = []
    for enabled in (False, True):
        set_activation_checkpointing(model, enabled)
        total = [0]

        def pack(t, total=total):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(ids[:, :-1])
        saved_bytes.append(total[0])
    assert saved_bytes[1] < 0.5 * saved_bytes[0]


def test_bf16_autocast_keeps_float32_weights_and_state_and_trains_like_fp32():
    fp32 = tiny_trainer(precision="fp32")
    bf16 = tiny_trainer(precision="bf16")
    a = [fp32.train_step()["loss"] for _ in range(3)]
    b = [bf16.train_step()["loss"] for _ in range(3)]
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert all(v.dtype == torch.float32 for s in bf16.optimizer.state.values() for k, v in s.items() if k != "step")
    # bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2% per value); over a few layers
    # of matmuls the loss of a near-uniform model moves by well under 2%
    assert all(math.isclose(x, y, rel_tol=0.02) for x, y in zip(a, b))


def test_pure_bf16_keeps_everything_in_bf16():
    trainer = tiny_trainer(precision="bf16-pure")
    loss = trainer.train_step()["loss"]
    assert all(p.dtype == torch.bfloat16 for p in trainer.model.parameters())
    assert all(v.dtype == torch.bfloat16 for s in trainer.optimizer.state.values() for k, v in s.items() if k != "step")
    assert math.isfinite(loss)
