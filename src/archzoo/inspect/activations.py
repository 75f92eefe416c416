"""Activation memory of one training step, with and without checkpointing.

Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models", Sec. 4.1, count the bytes a GPT layer keeps for its
backward pass (16-bit activations, s = sequence, b = batch, h = d_model,
a = heads, no tensor/sequence parallelism):

    attention  11 s b h + 5 a s^2 b    (QKV input 2, Q and K 4, V 2, o_proj input 2,
                                         dropout mask 1; softmax 2, its dropout mask 1 and output 2 per score)
    MLP        19 s b h                 (input 2, GeLU input 8, GeLU output 8, dropout mask 1; d_ff = 4h)
    norms       4 s b h                 (two LayerNorm inputs)
    layer      s b h (34 + 5 a s / h)

Adapted here (the same bookkeeping, element by element, for the blocks this
zoo builds; ``test_inspect`` checks the adaptation reproduces 34 + 5as/h on
their GPT layer):

- GQA/MQA: K and V keep n_kv_heads x head_dim values each, not h.
- qk-norm (Qwen3): the norms' inputs, (n_heads + n_kv_heads) x head_dim.
- MLA: the query and key/value latents before and after their norms, then the
  decompressed Q, K, V as above.
- SwiGLU/GeGLU: gate output, up output and their product (3 d_ff), against
  the plain MLP's GeLU input and output (2 d_ff).
- MoE: router logits in fp32 (4 bytes x n_experts), and for each of the top_k
  experts a copy of the input and of the output plus 3 expert_hidden; shared
  experts as a gated MLP.
- No dropout by default (modern LLM pre-training runs without it); the masks
  come back with ``dropout=True``.
- Fused attention (FlashAttention / SDPA) keeps no s x s scores, only a fp32
  log-sum-exp per head and query; ``scores_stored=True`` keeps Korthikanti's
  5 a s^2 b (or 2 a s^2 b without dropout).
- Outside the layers: the final norm input, the head input, and the logits in
  fp32 for the cross entropy (their 4 s b v term).

Full checkpointing (Chen et al. 2016; Korthikanti et al. Sec. 4.3) keeps only
each layer's input (2 s b h per layer) and recomputes one layer at a time in
the backward pass, so one layer's full activations are live on top of that.
"""

from __future__ import annotations

from ..config import Config, LayerPlan
from ..models.builders import attention_on_meta


def layer_values_per_token(
    cfg: Config,
    plan: LayerPlan,
    seq_len: int,
    *,
    bytes_per_value: float = 2,
    dropout: bool = False,
    scores_stored: bool = False,
    attention_values: int | None = None,
) -> float:
    """Bytes one decoder layer keeps per token of a sequence of ``seq_len`` for its backward pass.

    attention_values: the attention block's ``activation_values()``, when the caller already has it.
    """
    p = bytes_per_value
    d = cfg.model.d_model
    n_h = cfg.n_heads
    mask = 1 if dropout else 0  # one byte per dropped-out value
    norms = 4 if cfg.norm.placement == "sandwich" else 2
    total = norms * p * d
    if attention_values is None:
        attention_values = _attention_values(cfg)
    total += p * d + attention_values * p + mask * d
    if scores_stored:
        total += n_h * seq_len * (p + (mask + p if dropout else 0))
    else:
        total += 4 * n_h  # fp32 log-sum-exp per head
    total += p * d + mask * d  # MLP input, output dropout mask
    if plan.mlp == "dense":
        h = cfg.mlp_hidden
        total += p * h * (3 if cfg.mlp.kind in ("swiglu", "geglu") else 2)
    else:
        moe = cfg.moe
        total += 4 * moe.n_experts + moe.top_k * p * (2 * d + 3 * moe.expert_hidden) + 3 * p * moe.shared_width
    return total


def _attention_values(cfg: Config) -> int:
    """Values kept by the attention sublayer past its input: the block's own ``activation_values``."""
    return attention_on_meta(cfg).activation_values()


def activation_bytes(
    cfg: Config,
    batch: int,
    seq_len: int,
    *,
    checkpointing: bool = False,
    bytes_per_value: float = 2,
    dropout: bool = False,
    scores_stored: bool = False,
) -> float:
    """Activation bytes of one training step (see the module docstring)."""
    d = cfg.model.d_model
    attention = _attention_values(cfg)  # every layer's attention block is the same kind and size
    per_layer = [
        layer_values_per_token(
            cfg, plan, seq_len, bytes_per_value=bytes_per_value, dropout=dropout, scores_stored=scores_stored,
            attention_values=attention,
        )
        for plan in cfg.layer_plan
    ]  # fmt: skip
    outside = 2 * bytes_per_value * d + 4 * cfg.model.vocab_size
    if cfg.model.embedding_norm:
        outside += bytes_per_value * d
    if checkpointing:
        per_token = cfg.model.n_layers * bytes_per_value * d + max(per_layer) + outside
    else:
        per_token = sum(per_layer) + outside
    return batch * seq_len * per_token
