"""Mixture-of-experts feed-forward layer (Shazeer et al. 2017; Fedus et al. 2022, "Switch";
Dai et al. 2024, "DeepSeekMoE"; DeepSeek-AI 2024, "DeepSeek-V3").

    MoE(x) = sum_{i in TopK(x)} w_i(x) E_i(x)  +  g(x) S(x)

E_i are the routed experts (``experts.py``), chosen and weighted by the router
(``router.py``). S is the shared expert, a SwiGLU every token passes through
(DeepSeek: ``n_shared_experts`` fused into one MLP of width n x expert_hidden;
Qwen2-MoE: one, of width ``shared_hidden``), with g(x) = sigmoid(w_g . x) for
Qwen2-MoE's ``shared_gate`` and g = 1 otherwise.

A forward returns an ``MoEOutput``: the output and the training signals of
that call (nothing is kept on the module, so two calls never mix them up):

``aux_loss`` (training mode, ``aux_loss_coef`` > 0; else None): the Switch / GShard
load-balancing loss as transformers computes it for Qwen-MoE,

    L_aux = coef * E * sum_i f_i P_i,    f_i = (tokens routed to i) / T,
                                         P_i = mean_t s'_t,i

over the T tokens of the batch, with s' the router scores normalised to sum to
1 per token (the softmax itself; sigmoid scores divided by their sum). With
top-k routing sum_i f_i = k, so a perfectly even router gives coef * k
(DeepSeek-V2 writes the same loss divided by k).

``expert_load``: tokens routed to each expert, ``[E]``.

``update_router_bias``: DeepSeek-V3's auxiliary-loss-free balancing,
b_i <- b_i + gamma * sign(mean_j load_j - load_i), applied outside autograd
to the correction bias of every router, from the loads of the forward it is
given (``model(..., return_dict=True).expert_loads``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .experts import StackedExperts
from .mlp import SwiGLU
from .router import Router


def load_balancing_loss(scores: torch.Tensor, counts: torch.Tensor, counted_tokens: int | None = None) -> torch.Tensor:
    """E * sum_i f_i P_i from router scores ``[T, E]`` and tokens per expert ``[E]``.

    counted_tokens: the tokens ``counts`` were counted over (default T); under data
    parallelism the whole batch's, while P_i stays this process's mean."""
    n_tokens, n_experts = scores.shape
    fraction = counts.to(scores.dtype) / (n_tokens if counted_tokens is None else counted_tokens)
    probability = (scores / scores.sum(dim=-1, keepdim=True)).mean(dim=0)
    return n_experts * (fraction * probability).sum()


@dataclass
class MoEOutput:
    """One MoE forward: its output and the routing signals of this call."""

    hidden: torch.Tensor  # the layer's output, shaped as its input
    indices: torch.Tensor  # [T, k] experts chosen for each token
    n_experts: int
    aux_loss: torch.Tensor | None = None  # coef * L_aux; training mode with aux_loss_coef > 0 only

    @property
    def expert_load(self) -> torch.Tensor:
        """Tokens routed to each expert, ``[E]`` (counted on demand: decoding never asks)."""
        return torch.bincount(self.indices.flatten(), minlength=self.n_experts)


class MoE(nn.Module):
    """``router``, stacked ``experts``, optional ``shared_experts`` and ``shared_gate``."""

    def __init__(
        self,
        d_model: int,
        *,
        n_experts: int,
        top_k: int,
        expert_hidden: int,
        shared_hidden: int = 0,
        shared_gate: bool = False,
        aux_loss_coef: float = 0.0,
        bias_update_rate: float = 0.001,
        **router_options,
    ):
        super().__init__()
        self.router = Router(d_model, n_experts, top_k, **router_options)
        self.experts = StackedExperts(d_model, expert_hidden, n_experts)
        self.shared_experts = SwiGLU(d_model, shared_hidden) if shared_hidden else None
        self.shared_gate = nn.Linear(d_model, 1, bias=False) if shared_gate else None
        self.aux_loss_coef = aux_loss_coef
        # (counts, tokens) -> the same over the global batch; set by data-parallel training
        # (train/distributed/batch.py), so f_i counts every process's tokens, as one process would
        self.global_counts = None
        self.bias_update_rate = bias_update_rate

    def forward(self, x: torch.Tensor) -> MoEOutput:
        tokens = x.reshape(-1, x.shape[-1])
        routing = self.router(tokens)
        out = self.experts(tokens, routing.indices, routing.weights)
        if self.shared_experts is not None:
            shared = self.shared_experts(tokens)
            if self.shared_gate is not None:
                shared = torch.sigmoid(self.shared_gate(tokens)) * shared
            out = out + shared
        result = MoEOutput(out.view(x.shape), routing.indices, self.router.n_experts)
        if self.training and self.aux_loss_coef > 0:
            counts, counted = result.expert_load, tokens.shape[0]
            if self.global_counts is not None:  # data parallelism: f_i over every process's tokens
                counts, counted = self.global_counts(counts, counted)
            result.aux_loss = self.aux_loss_coef * load_balancing_loss(routing.scores, counts, counted)
        return result


@torch.no_grad()
def update_router_bias(
    model_or_layer: nn.Module,
    loads: torch.Tensor | Sequence[torch.Tensor],
    rate: float | None = None,
) -> int:
    """DeepSeek-V3's aux-loss-free update: b_i += rate * sign(mean(load) - load_i).

    model_or_layer: a model, an ``MoE`` layer or a ``Router``; every router with
        a correction bias inside it is updated, in module order.
    loads: tokens per expert, one ``[E]`` tensor per router (a list, e.g.
        ``model(ids, return_dict=True).expert_loads``), or a single tensor for a
        single router (``MoE(...)(x).expert_load``).
    rate: gamma; None = each layer's ``bias_update_rate`` (the config's).
    Returns the number of routers updated.
    """
    layers = [m for m in model_or_layer.modules() if isinstance(m, (MoE, Router))]
    owners = {id(m.router): m for m in layers if isinstance(m, MoE)}
    routers = [m for m in layers if isinstance(m, Router) and m.e_score_correction_bias is not None]
    if not routers:
        raise ValueError("update_router_bias: no router with a correction bias (moe.correction_bias = true) found")
    if isinstance(loads, torch.Tensor):
        loads = [loads]
    if len(loads) != len(routers):
        raise ValueError(f"update_router_bias: got {len(loads)} load tensors for {len(routers)} routers")
    for router, load in zip(routers, loads):
        if load.shape != router.e_score_correction_bias.shape:
            raise ValueError(
                f"update_router_bias: a load has shape {list(load.shape)}, expected [{router.n_experts}] (one per expert)"
            )
        owner = owners.get(id(router))
        gamma = rate if rate is not None else (owner.bias_update_rate if owner is not None else 0.001)
        load = load.float()
        router.e_score_correction_bias += gamma * torch.sign(load.mean() - load)
    return len(routers)
