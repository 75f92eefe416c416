"""The training loop: AdamW (Loshchilov & Hutter 2019) on next-token cross-entropy.

One optimizer step over ``accumulate`` micro-batches of ``batch`` windows:

    L = 1/A sum_a [ -1/(B T) sum_{b,t} log p(x_{b,t+1} | x_{b,<=t}) + L_aux ]    (L_aux: MoE balancing)
    g = grad L,  g <- g * min(1, c / ||g||)                                       (clipping, c = grad_clip)
    AdamW(g, lr(step)),  then DeepSeek-V3's router-bias update on the step's expert loads

AdamW runs fused (``fused=True``: one kernel per tensor). The learning rate
follows ``schedule.py``; weight decay applies to matrices
(embeddings, projections, experts), not to norm gains and biases. Everything a
step depends on (weights, AdamW moments, step, data position, RNG) is in
``state()``, so ``load_state(state())`` continues bit for bit.

``parallel`` says which rows of each batch this process computes and how its numbers
combine with the other processes' (``distributed/batch.py``); the default,
``OneProcess()``, is plain training, where every one of those steps is the identity.
A sharded model (``distributed/``) trains through the same loop.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks.moe import update_router_bias
from ..models.inputs import trusted_inputs
from .checkpoint import TrainerState
from .data import Split, WindowSampler, check_ids, fixed_windows
from .distributed.batch import OneProcess
from .methods import FullTraining
from .precision import forward_context, model_dtype
from .recompute import set_activation_checkpointing
from .schedule import learning_rate
from .settings import TrainSettings


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, T, V]`` against ``targets [B, T]`` (computed in float32).

    For logits in hand; the loop itself asks the model (``model(ids, targets=...)``), which
    computes the same loss without forming the whole logits on its fast path."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


class Trainer:
    """Trains ``model`` in place on ``data`` with ``settings``; ``method`` picks what trains."""

    def __init__(self, model: nn.Module, data: Split, settings: TrainSettings, *, method=None, parallel=None):
        self.settings = settings.check()
        self.method = method or FullTraining()
        self.parallel = parallel or OneProcess()
        self.model = model
        self.data = data
        vocab = model.config.model.vocab_size  # checked once here, so that no step re-checks its windows
        check_ids(data.train, vocab, "training data")
        check_ids(data.val, vocab, "validation data")
        if self.parallel.world == 1:
            model.to(model_dtype(settings.precision))  # a sharded model was built in its dtype
        set_activation_checkpointing(model, settings.checkpointing)
        named = self.method.trainable(model)
        if not named:
            raise ValueError("the training method selected no trainable parameter")
        matrices, vectors = [(n, p) for n, p in named if p.dim() >= 2], [(n, p) for n, p in named if p.dim() < 2]
        self.parameter_names = [n for n, _ in matrices + vectors]  # the optimizer's order (ids 0, 1, ...)
        self.parameters = [p for _, p in named]
        groups = [
            {"params": [p for _, p in matrices], "weight_decay": settings.weight_decay},
            {"params": [p for _, p in vectors], "weight_decay": 0.0},
        ]
        # fused: one kernel per tensor for the whole update (no sqrt / division temporaries): 15%
        # off a small model's CPU step against the default per-op form (benchmarks/bench_train.py)
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=settings.lr, betas=(settings.beta1, settings.beta2), eps=settings.eps,
            fused=True,
        )  # fmt: skip
        self.sampler = WindowSampler(data.train, settings.seq_len, settings.seed)
        self.val_windows = None
        if settings.val_fraction > 0 and data.val.numel() > settings.seq_len:
            self.val_windows = fixed_windows(data.val, settings.seq_len, settings.eval_batches * settings.batch)
        moe = model.config.moe
        self.updates_router_bias = moe is not None and moe.correction_bias
        if self.parallel.world > 1:
            for module in model.modules():
                if hasattr(module, "global_counts"):
                    module.global_counts = self.parallel.global_counts
        self.device = next(model.parameters()).device
        self.step = 0
        self.tokens = 0
        torch.manual_seed(settings.seed)

    def lr(self, step: int | None = None) -> float:
        s = self.settings
        return learning_rate(self.step if step is None else step, s.steps, s.lr, s.warmup, s.min_lr_ratio)

    def train_step(self) -> dict:
        """Run one optimizer step; returns its log record (``log.py`` without time and val fields)."""
        s, model = self.settings, self.model
        model.train()
        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        start = time.perf_counter()
        losses, aux_losses, loads = [], [], None
        for _ in range(s.accumulate):
            windows = self.parallel.rows(self.sampler.next_batch(s.batch)).to(self.device)
            with forward_context(s.precision, self.device), trusted_inputs():  # ids checked in __init__
                # the model applies its head and the loss itself: its fast form never forms the logits
                out = model(windows[:, :-1], return_dict=True, targets=windows[:, 1:])
            loss, aux, step_loads = out.loss, out.aux_loss, [load.detach() for load in out.expert_loads]
            del out
            total = loss if aux is None else loss + aux
            (total / s.accumulate).backward()
            del total
            losses.append(self.parallel.mean(loss.item()))
            if aux is not None:
                aux_losses.append(self.parallel.mean(aux.item()))
            if self.updates_router_bias:
                step_loads = self.parallel.sum_counts(step_loads)
                loads = step_loads if loads is None else [a + b for a, b in zip(loads, step_loads)]
        max_norm = s.grad_clip if s.grad_clip > 0 else math.inf
        grad_norm = self.parallel.clip_gradients(self.parameters, max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.updates_router_bias:

            update_router_bias(model, loads)
        self.step += 1
        self.tokens += s.tokens_per_step
        seconds = time.perf_counter() - start
        record = {
            "step": self.step,
            "tokens": self.tokens,
            "loss": sum(losses) / len(losses),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens_per_s": s.tokens_per_step / seconds if seconds > 0 else None,
        }
        if aux_losses:
            record["aux_loss"] = sum(aux_losses) / len(aux_losses)
        return record

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Mean validation cross-entropy over the fixed held-out windows (None without a validation split)."""
        if self.val_windows is None:
            return None
        self.model.eval()
        total, count = 0.0, 0
        for chunk in self.val_windows.split(self.settings.batch):
            rows = self.parallel.rows(chunk).to(self.device)
            weight = rows.shape[0]
            if weight == 0:  # a short last chunk: every process must still take part in the forward
                rows = chunk[:1].to(self.device)
            with forward_context(self.settings.precision, self.device), trusted_inputs():
                loss = self.model(rows[:, :-1], targets=rows[:, 1:])
            total += self.parallel.mean(loss.item() * weight) * self.parallel.world
            count += chunk.shape[0]
        self.model.train()
        return total / count

    def state(self) -> TrainerState:
        return TrainerState(self.step, self.tokens, self.optimizer.state_dict(), self.sampler.state(), torch.get_rng_state())

    def load_state(self, state: TrainerState) -> None:
        self.step, self.tokens = state.step, state.tokens
        self.optimizer.load_state_dict(state.optimizer)
        self.sampler.load_state(state.data)
        self.restore_rng(state.rng)

    def restore_rng(self, rng: torch.Tensor) -> None:
        torch.set_rng_state(rng)
