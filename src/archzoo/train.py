"""Training a language model on a token stream with AdamW (Loshchilov & Hutter 2019).

Next-token cross-entropy over random windows of the stream:

    L = -1/N sum_t log p(x_{t+1} | x_{<=t})   (+ the MoE load-balancing loss, if configured)

with a linear warm-up then cosine decay of the learning rate. For MoE configs
with DeepSeek-V3's correction bias, the aux-loss-free bias update runs after
every step on that step's expert loads. Small enough for a laptop CPU and a
tiny config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .models.decoder import CausalLM


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting token t+1 from positions <= t."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten())


def random_windows(tokens: torch.Tensor, batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
    """``[batch, seq_len]`` windows starting at random offsets of a 1-D token stream."""
    if tokens.dim() != 1 or tokens.numel() < seq_len + 1:
        raise ValueError(f"tokens: need a 1-D stream of at least seq_len + 1 = {seq_len + 1} tokens, got {tuple(tokens.shape)}")
    starts = torch.randint(0, tokens.numel() - seq_len + 1, (batch,), generator=generator)
    return torch.stack([tokens[s : s + seq_len] for s in starts.tolist()])


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to peak / 10."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainStep:
    step: int
    loss: float
    lr: float


def train(
    model: CausalLM,
    tokens: torch.Tensor,
    *,
    steps: int,
    batch: int = 8,
    seq_len: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.1,
    warmup: int = 10,
    seed: int = 0,
    on_step: Callable[[TrainStep], None] | None = None,
) -> list[float]:
    """Train in place; returns the loss of every step."""
    if model.config.moe is not None and model.config.moe.correction_bias:
        from .blocks.moe import update_router_bias
    else:
        update_router_bias = None
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    model.train()
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, steps, lr, warmup)
        input_ids = random_windows(tokens, batch, seq_len, generator)
        out = model(input_ids, return_dict=True)
        loss = next_token_loss(out.logits, input_ids)
        total = loss + out.aux_loss if out.aux_loss is not None else loss
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if update_router_bias is not None:
            update_router_bias(model, out.expert_loads)
        losses.append(loss.item())
        if on_step is not None:
            on_step(TrainStep(step, loss.item(), optimizer.param_groups[0]["lr"]))
    model.eval()
    return losses
