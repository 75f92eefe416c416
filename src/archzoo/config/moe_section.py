"""The ``[moe]`` section: mixture-of-experts feed-forward layers (a frozen dataclass, no torch).

Its own file because it is the largest section and the only optional one with a layer plan
(``first_dense_layers``, ``sparse_step``, ``dense_layers``); ``sections.py`` re-exports it.
Rules are checked in ``validate.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RouterScoring = Literal["softmax", "sigmoid"]
GroupScore = Literal["max", "top2_sum"]


@dataclass(frozen=True)
class MoESection:
    """``[moe]``: mixture-of-experts feed-forward layers (optional section).

    n_experts: routed experts per MoE layer; top_k: experts per token.
    expert_hidden: inner width of one routed expert (a SwiGLU).
    n_shared_experts: always-on experts (DeepSeek); their width is
        shared_hidden, unset = n_shared_experts * expert_hidden.
    shared_gate: the shared expert's output is scaled by sigmoid(w . x) (Qwen2-MoE).
    scoring: router scores by ``softmax`` or ``sigmoid`` (DeepSeek-V3).
    normalize_top_k: renormalise the chosen weights to sum to 1.
    n_groups / topk_groups: group-limited routing (DeepSeek): experts split in
        n_groups; only experts in the best topk_groups groups may be chosen.
    group_score: a group's score: ``max`` (V2) or ``top2_sum`` (V3). Ignored when
        n_groups = 1 (the one group is always kept); accepted there because
        DeepSeek-V3-style checkpoints with ``n_group = 1`` carry it.
    routed_scaling_factor: multiplies the routed output weights.
    correction_bias: a non-learned per-expert bias used only for choosing (V3).
    first_dense_layers: the first k layers use the dense MLP (DeepSeek first_k_dense_replace).
    sparse_step: every sparse_step-th layer is MoE (Qwen-MoE decoder_sparse_step).
    dense_layers: explicit dense layer indices (Qwen-MoE mlp_only_layers).
    aux_loss_coef: weight of the load-balancing loss in the returned aux loss.
    bias_update_rate: gamma of the aux-loss-free bias update (DeepSeek-V3); ignored
        without correction_bias (its default 0.001 is always present).
    """

    n_experts: int
    top_k: int
    expert_hidden: int
    n_shared_experts: int = 0
    shared_hidden: int | None = None
    shared_gate: bool = False
    scoring: RouterScoring = "softmax"
    normalize_top_k: bool = False
    n_groups: int = 1
    topk_groups: int = 1
    group_score: GroupScore = "max"
    routed_scaling_factor: float = 1.0
    correction_bias: bool = False
    first_dense_layers: int = 0
    sparse_step: int = 1
    dense_layers: tuple[int, ...] = ()
    aux_loss_coef: float = 0.0
    bias_update_rate: float = 0.001

    @property
    def shared_width(self) -> int:
        """Inner width of the shared expert MLP; 0 when there is none."""
        if not self.n_shared_experts:
            return 0
        return self.shared_hidden or self.n_shared_experts * self.expert_hidden
