"""The one global batch, split over the processes, with the numbers one process would compute.

Every process draws the same windows (the same ``WindowSampler``, the same seed),
so the global batch of ``B`` windows needs no communication; process ``r`` of
``N`` computes rows ``r B/N .. (r+1) B/N - 1`` (``--batch`` must divide by N).

    loss       one process: L = 1/(B T) sum_{b,t} l_{b,t}. Each process computes the mean
               over its own B/N x T tokens, L_r; every window has T tokens, so
               L = 1/N sum_r L_r, and FSDP's gradient reduce-scatter, which averages over
               the processes, gives each the gradient of L itself.
    MoE aux    f_i (tokens routed to expert i) must count the global batch: the MoE layer's
               counts are all-reduced before the loss (``MoE.global_counts``), and with f_i
               global, L_aux,r = c E sum_i f_i P_i,r averages to L_aux's value and gradient.
    router     DeepSeek-V3's bias update reads the expert loads summed over the processes.
    clipping   the global L2 norm sqrt(sum over every shard of g^2): each process sums its
               shards' squares and the sum is all-reduced (DTensor's ``full_tensor``);
               ``grad_norm.py`` for why by rows.
    logging    loss, aux loss and validation loss are averaged over the processes
               (float64, so the average adds no rounding of its own).

``OneProcess`` is the same interface for a world of one, where each is the identity:
the training loop has one code path.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..grad_norm import gradient_norm
from .env import DistEnv


class OneProcess:
    """A world of one: plain training."""

    rank, world, is_main = 0, 1, True

    def rows(self, windows: torch.Tensor) -> torch.Tensor:
        return windows

    def mean(self, value: float) -> float:
        return value

    def sum_counts(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return tensors

    def global_counts(self, counts: torch.Tensor, tokens: int) -> tuple[torch.Tensor, int]:
        return counts, tokens

    def clip_gradients(self, parameters: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        """Scale the gradients to at most ``max_norm`` by their global norm (``grad_norm.py``); return that norm."""
        norm = self.global_norm([p.grad for p in parameters if p.grad is not None])
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
        return norm

    def global_norm(self, grads: list[torch.Tensor]) -> torch.Tensor:
        return gradient_norm(grads)

    def max_int(self, value: int) -> int:
        return value


class Processes(OneProcess):
    """``world`` processes training one model, each on its rows of the global batch (module docstring)."""

    def __init__(self, env: DistEnv):
        self.env = env
        self.rank, self.world, self.is_main = env.rank, env.world, env.is_main

    def rows(self, windows: torch.Tensor) -> torch.Tensor:
        return windows.tensor_split(self.world)[self.rank]

    def mean(self, value: float) -> float:
        total = torch.tensor([value], dtype=torch.float64, device=self.env.device)
        dist.all_reduce(total)
        return float(total) / self.world

    def sum_counts(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        summed = [t.clone() for t in tensors]
        for t in summed:
            dist.all_reduce(t)
        return summed

    def global_counts(self, counts: torch.Tensor, tokens: int) -> tuple[torch.Tensor, int]:
        counts = counts.detach().clone()
        dist.all_reduce(counts)
        return counts, tokens * self.world

    def global_norm(self, grads: list[torch.Tensor]) -> torch.Tensor:
        # imported here: torch.distributed.tensor costs a second at start-up, and one process never needs it
        from torch.distributed.tensor import DTensor

        norm = gradient_norm(grads)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm  # every shard's sum of squares, all-reduced

    def max_int(self, value: int) -> int:
        total = torch.tensor([value], dtype=torch.int64, device=self.env.device)
        dist.all_reduce(total, op=dist.ReduceOp.MAX)
        return int(total)
