"""Training reduces the loss; the pieces follow their definitions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import archzoo
from archzoo.cli import main
from archzoo.train import learning_rate, next_token_loss, random_windows, train


def test_next_token_loss_is_shifted_cross_entropy():
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(0, 7, (2, 5))
    by_hand = -torch.stack(
        [F.log_softmax(logits[b, t], -1)[ids[b, t + 1]] for b in range(2) for t in range(4)]
    ).mean()
    assert torch.allclose(next_token_loss(logits, ids), by_hand)


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 1.0, 10) == 0.1
    assert learning_rate(9, 100, 1.0, 10) == 1.0
    assert math.isclose(learning_rate(100, 100, 1.0, 10), 0.1)


def test_windows_come_from_the_stream():
    tokens = torch.arange(100)
    windows = random_windows(tokens, 4, 10, torch.Generator().manual_seed(0))
    assert windows.shape == (4, 10)
    assert torch.equal(windows[:, 1:] - windows[:, :-1], torch.ones(4, 9, dtype=torch.long))


def test_a_tiny_model_learns_a_repeating_pattern():
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    tokens = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6] * 40)
    losses = train(model, tokens, steps=40, batch=4, seq_len=24, lr=1e-2, warmup=5)
    assert losses[0] > 0.8 * math.log(512)  # starts near a uniform guess
    assert losses[-1] < 0.25 * losses[0]


def test_train_command(capsys, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("abcabcabc " * 50)
    assert main(["train", "llama-tiny", "--text", str(text), "--steps", "3", "--batch", "2", "--seq-len", "16"]) == 0
    out = capsys.readouterr().out
    assert "step     0" in out and "loss" in out


def test_training_a_deepseek_v3_style_model_moves_the_router_bias():
    """Aux-loss-free balancing (DeepSeek-V3): after each step every correction bias moves
    by +-rate per expert, against that step's loads; the main loss still trains."""
    torch.manual_seed(0)
    model = archzoo.build_model("deepseek-tiny")
    biases = [b for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")]
    assert biases and all(torch.equal(b, torch.zeros_like(b)) for b in biases)
    rate = model.config.moe.bias_update_rate
    tokens = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6] * 40)
    train(model, tokens, steps=3, batch=2, seq_len=16, lr=1e-2, warmup=1)
    for bias in biases:
        steps_taken = bias / rate  # each step adds -1, 0 or +1 per expert
        assert torch.allclose(steps_taken, steps_taken.round(), atol=1e-4)
        assert steps_taken.abs().max() <= 3 + 1e-4 and bias.abs().sum() > 0
