"""Mixture-of-experts routers: which k of E experts see a token, and with what weight.

For a token x with router logits l = W_r x (W_r is ``[E, d]``, no bias):

    s = softmax(l)            Switch / GShard / Qwen-MoE / DeepSeek-V2     (``scoring = "softmax"``)
    s = sigmoid(l)            DeepSeek-V3                                  (``scoring = "sigmoid"``)

Choice. Experts are chosen on c = s + b, where b is DeepSeek-V3's per-expert
correction bias (a non-learned buffer, ``e_score_correction_bias``; zero
otherwise). Group-limited routing (DeepSeek-V2/V3) splits the E experts into G
groups, scores each group by

    max     max_{i in g} c_i                       (DeepSeek-V2, "group_limited_greedy")
    top2_sum  sum of the two largest c_i in g        (DeepSeek-V3, "noaux_tc")

keeps the best ``topk_groups`` groups and sets c_i = -inf in every other group,
so that a masked expert can never beat a kept one, even when kept scores are
negative (with V3's bias they can be; filling with 0 would then pick masked
experts). The top-k experts of c are chosen.

Weights come from the *unbiased* scores: w_i = s_i for the chosen i, optionally
renormalised to sum to 1 (``normalize_top_k``: Qwen3-MoE, DeepSeek-V3; not
Qwen2-MoE or DeepSeek-V2), then multiplied by ``routed_scaling_factor``.
Router arithmetic runs in float32, as the reference implementations do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class Routing:
    """What the router decided for N tokens."""

    logits: torch.Tensor  # [N, E] float32
    indices: torch.Tensor  # [N, k] chosen experts
    weights: torch.Tensor  # [N, k] float32 output weights of the chosen experts
    scoring: str = "softmax"
    computed_scores: torch.Tensor | None = None

    @property
    def scores(self) -> torch.Tensor:
        """[N, E] float32 softmax or sigmoid of the logits (computed on first use)."""
        if self.computed_scores is None:
            self.computed_scores = SCORING_KINDS[self.scoring](self.logits)
        return self.computed_scores


def group_max(scores: torch.Tensor) -> torch.Tensor:
    """``[N, G, E/G]`` -> ``[N, G]``: the best expert of each group."""
    return scores.amax(dim=-1)


def group_top2_sum(scores: torch.Tensor) -> torch.Tensor:
    """``[N, G, E/G]`` -> ``[N, G]``: the sum of the two best experts of each group."""
    return scores.topk(2, dim=-1).values.sum(dim=-1)


def mask_groups(choice: torch.Tensor, n_groups: int, keep: int, group_score: str) -> torch.Tensor:
    """Set the choice scores of experts outside the best ``keep`` groups to -inf."""
    n_tokens, n_experts = choice.shape
    grouped = choice.view(n_tokens, n_groups, n_experts // n_groups)
    best = GROUP_SCORES[group_score](grouped).topk(keep, dim=-1).indices
    dropped = torch.ones(n_tokens, n_groups, dtype=torch.bool, device=choice.device).scatter_(1, best, False)
    return grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).view(n_tokens, n_experts)


class Router(nn.Module):
    """The gate: ``weight`` ``[E, d]`` and, for DeepSeek-V3, the buffer ``e_score_correction_bias`` ``[E]``."""

    def __init__(
        self,
        d_model: int,
        n_experts: int,
        top_k: int,
        *,
        scoring: str = "softmax",
        normalize_top_k: bool = False,
        n_groups: int = 1,
        topk_groups: int = 1,
        group_score: str = "max",
        routed_scaling_factor: float = 1.0,
        correction_bias: bool = False,
    ):
        super().__init__()
        if n_experts % n_groups:
            raise ValueError(f"n_groups ({n_groups}) must divide n_experts ({n_experts})")
        self.n_experts, self.top_k = n_experts, top_k
        self.scoring, self.normalize_top_k = scoring, normalize_top_k
        self.n_groups, self.topk_groups, self.group_score = n_groups, topk_groups, group_score
        self.routed_scaling_factor = routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(n_experts, d_model))
        if correction_bias:
            # persistent: checkpoints carry it; float32 like the reference (it is updated in small steps)
            self.register_buffer("e_score_correction_bias", torch.zeros(n_experts, dtype=torch.float32))
        else:
            self.e_score_correction_bias = None

    def init_weights(self, std: float) -> None:
        nn.init.normal_(self.weight, 0.0, std)
        if self.e_score_correction_bias is not None:
            nn.init.zeros_(self.e_score_correction_bias)

    def forward(self, x: torch.Tensor) -> Routing:
        """Route ``x`` ``[N, d]``."""
        logits = F.linear(x.float(), self.weight.float())
        return self.choose(logits, SCORING_KINDS[self.scoring](logits))

    def choose(self, logits: torch.Tensor, scores: torch.Tensor) -> Routing:
        """Pick top-k experts from the scores (biased and group-masked for the choice only)."""
        choice = scores
        if self.e_score_correction_bias is not None:
            choice = scores + self.e_score_correction_bias
        if self.n_groups > 1 and self.topk_groups < self.n_groups:
            choice = mask_groups(choice, self.n_groups, self.topk_groups, self.group_score)
        indices = choice.topk(self.top_k, dim=-1).indices
        weights = scores.gather(1, indices)
        if self.normalize_top_k:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        if self.routed_scaling_factor != 1.0:
            weights = weights * self.routed_scaling_factor
        return Routing(logits, indices, weights, self.scoring, scores)

    def extra_repr(self) -> str:
        groups = f", groups={self.topk_groups}/{self.n_groups} ({self.group_score})" if self.n_groups > 1 else ""
        bias = ", correction_bias" if self.e_score_correction_bias is not None else ""
        return f"experts={self.n_experts}, top_k={self.top_k}, scoring={self.scoring}{groups}{bias}"


SCORING_KINDS = {
    "softmax": lambda logits: logits.softmax(dim=-1),
    "sigmoid": lambda logits: logits.sigmoid(),
}
"""``[moe] scoring`` -> logits ``[N, E]`` to scores."""

GROUP_SCORES = {"max": group_max, "top2_sum": group_top2_sum}
"""``[moe] group_score`` -> ``[N, G, E/G]`` to a score per group."""
