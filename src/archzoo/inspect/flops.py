"""FLOPs per token, from the parameter report and the attention shapes.

Forward pass, per token, at context length n_ctx (Kaplan et al. 2020,
"Scaling Laws for Neural Language Models", Table 1, with the attention term
counted as Hoffmann et al. 2022, "Chinchilla", Appendix F, count it):

    C_forward = 2 N_matmul + 2 n_layers n_ctx (d_qk + d_v)

    N_matmul   parameters a token multiplies through: the active parameters
               (MoE: only its top-k routed experts) without the input
               embedding table (a lookup costs no FLOPs), plus the output head
               vocab x d_model (also when it is tied to the embedding).
               Norm gains and biases are counted at 2 FLOPs each too; that is
               a rounding error.
    d_qk, d_v  query-key and value widths over all query heads (n_heads x
               head_dim each for MHA/GQA/MQA; GQA/MQA share K and V but every
               query head still takes its own dot products). MLA is counted in
               its decompressed (training) form: n_heads x (nope + rope) and
               n_heads x v_head_dim.

The attention term is q.K^T (2 n_ctx d_qk) plus the weighted sum of V
(2 n_ctx d_v) per layer. Kaplan et al.'s 2 n_layer n_ctx d_attn counts the
q.K^T logits only; with d_qk = d_v = d_attn ours is twice theirs. n_ctx is the
full context, not halved for the causal mask (as both papers do; a kernel that
skips masked blocks does about half the attention work).

Training step, per token: backward = 2 x forward, so C_train = 3 C_forward,
which is Kaplan's 6N plus 3x the attention term. With full activation
recomputation the forward runs twice: 4 C_forward.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import Config
from ..models.builders import attention_on_meta
from .params import ParamReport


@dataclass(frozen=True)
class FlopsReport:
    """FLOPs per token at one context length (see the module docstring)."""

    seq_len: int
    matmul_params: int
    dense_per_token: int  # 2 N_matmul
    attention_per_token: int  # 2 n_layers n_ctx (d_qk + d_v)
    forward_per_token: int
    training_per_token: int  # 3 x forward
    training_recompute_per_token: int  # 4 x forward (full activation checkpointing)

    def to_dict(self) -> dict:
        return asdict(self)


def attention_widths(cfg: Config) -> tuple[int, int]:
    """(d_qk, d_v): query-key and value widths summed over the query heads (the block's ``score_widths``)."""
    return attention_on_meta(cfg).score_widths()


def attention_score_flops(d_qk: int, d_v: int, n_ctx: int) -> int:
    """q.K^T and softmax(.) V for one token over n_ctx keys in one layer: 2 n_ctx (d_qk + d_v)."""
    return 2 * n_ctx * (d_qk + d_v)


def matmul_params(cfg: Config, report: ParamReport) -> int:
    """Active parameters minus the embedding lookup, plus the vocab x d_model head."""
    c = report.components
    head = cfg.model.vocab_size * cfg.model.d_model
    return report.active - c["embeddings"] - c["lm_head"] + head


def estimate_flops(cfg: Config, report: ParamReport, seq_len: int) -> FlopsReport:
    """Forward and training FLOPs per token at context ``seq_len``."""
    n_matmul = matmul_params(cfg, report)
    d_qk, d_v = attention_widths(cfg)
    attention = cfg.model.n_layers * attention_score_flops(d_qk, d_v, seq_len)
    forward = 2 * n_matmul + attention
    return FlopsReport(
        seq_len=seq_len,
        matmul_params=n_matmul,
        dense_per_token=2 * n_matmul,
        attention_per_token=attention,
        forward_per_token=forward,
        training_per_token=3 * forward,
        training_recompute_per_token=4 * forward,
    )
