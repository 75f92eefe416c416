"""What each part of a decoder layer keeps for the backward pass, per token, in archzoo's training step.

The per-sublayer terms of ``train_step.py``'s activation count A (see its docstring): the norms,
the attention sublayer (``Attention`` and absorbed multi-head latent attention), the feed-forward
sublayer (dense and MoE), and a layer's backward working set. Each is the bytes of the storages
autograd saves, as archzoo's default fast path runs it, and is checked against autograd's saved
tensors in ``tests/train/test_saved_activations.py``. b: the activation bytes (4 fp32, else 2).
"""

from __future__ import annotations

from torch import nn

from ..blocks.attention import Attention
from ..blocks.mla import MultiHeadLatentAttention
from ..config import Config
from ..models.builders import attention_on_meta

PRECISION_BYTES = {"fp32": (4, 4, 4), "bf16": (4, 4, 2), "bf16-pure": (2, 2, 2)}
"""precision -> (weight bytes, optimizer-state and gradient bytes, activation bytes)."""


def norm_bytes(cfg: Config, precision: str) -> float:
    """Bytes per token one norm and the matmul reading its output keep (module docstring), with the
    per-row statistics: RMSNorm's ||x|| and 1 / rms (``fast/norm.py``), LayerNorm's mean and 1 / std, 8 bytes."""
    d = cfg.model.d_model
    if cfg.norm.kind == "layernorm":
        return {"fp32": 8 * d, "bf16": 6 * d, "bf16-pure": 4 * d}[precision] + 8
    return {"fp32": 12 * d, "bf16": 10 * d, "bf16-pure": 8 * d}[precision] + 8


def outside_bytes(cfg: Config, precision: str) -> float:
    """Bytes per token kept outside the decoder layers, the loss aside: the final norm, and the
    embedding's norm (BLOOM) with its input, the embedding's output."""
    kept = norm_bytes(cfg, precision)
    if cfg.model.embedding_norm:
        kept += norm_bytes(cfg, precision) - (2 if precision == "bf16-pure" else 4) * cfg.model.d_model
    return kept


def mlp_bytes(cfg: Config, precision: str, moe_layer: bool) -> float:
    """Bytes per token the feed-forward sublayer keeps for its backward pass, past its input (the norm's
    output; ``norm_bytes`` counts one bfloat16 cast of it under autocast). b: the activation bytes.

    dense   SwiGLU / GeGLU: the gate, its activation, up and their product: 4 h b; GeLU its input and
            output: 2 h b. Under autocast gate_proj and up_proj each save their own cast of the input (2 d).
    MoE     per chosen expert (k of them): its copy of the input, gate and up, the gate's activation, their
            product and the expert's output: k (2 d + 5 h_e) values, in float32 under autocast too (the
            stacked experts' grouped matmul is not on autocast's list, so it runs in float32); the router's
            probabilities (E values: bfloat16 under autocast, else float32) and its bookkeeping (the chosen
            experts and the sort that groups tokens by expert, 3 k int64; the k weights, twice, and their
            sum, float32; group-limited and sigmoid routing's indices and scores); shared experts as a gated MLP of width h_s, and with a sigmoid gate (Qwen2-MoE)
            the shared output it scales (d). Under autocast every reader of the input casts it (the
            router, the shared gate and up projections, the sigmoid gate); under bf16-pure the router
            reads a float32 copy of it (4 d).

    Checked against autograd's saved tensors (``tests/train/test_saved_activations.py``).
    """
    act = PRECISION_BYTES[precision][2]
    d = cfg.model.d_model
    if not moe_layer:
        gated = cfg.mlp.kind in ("swiglu", "geglu")
        return (4 if gated else 2) * cfg.mlp_hidden * act + (2 * d if gated and precision == "bf16" else 0)
    moe = cfg.moe
    expert_b = 2 if precision == "bf16-pure" else 4
    kept = moe.top_k * (2 * d + 5 * moe.expert_hidden) * expert_b
    kept += router_bytes(moe, precision)
    readers = 1
    if moe.shared_width:
        kept += 4 * moe.shared_width * act + (d * act + 4 if moe.shared_gate else 0)
        readers += 2 + (1 if moe.shared_gate else 0)
    if precision == "bf16":
        kept += 2 * d * (readers - 1)
    elif precision == "bf16-pure":
        kept += 4 * d
    return kept


def router_bytes(moe, precision: str) -> float:
    """Bytes per token a MoE router keeps (``mlp_bytes``): its probabilities and its bookkeeping."""
    kept = moe.n_experts * (2 if precision == "bf16" else 4) + 8 * 3 * moe.top_k + 4 * (2 * moe.top_k + 1)
    if moe.n_groups > 1:  # group-limited routing: each group's kept flag, and its score (max) or its top two's places
        kept += moe.n_groups * (1 + (2 * 8 if moe.group_score == "top2_sum" else 4))
    if moe.scoring == "sigmoid":  # DeepSeek-V3: chosen by the biased scores, weighted by the unbiased ones
        kept += (8 + 4) * moe.top_k
    return kept


def backward_working_bytes(cfg: Config, precision: str, moe_layer: bool = False) -> float:
    """Bytes per token a decoder layer's backward holds beyond what its forward kept, at its fullest
    (module docstring: W_b): the residual stream's gradient and the MLP's gradients, 2 h for a gated
    MLP, h for GeLU; for a MoE layer, per chosen expert, 2 h_e and the expert input's gradient (d), in
    float32 under autocast as the experts run (``mlp_bytes``)."""
    act = PRECISION_BYTES[precision][2]
    d = cfg.model.d_model
    residual = (2 if precision == "bf16-pure" else 4) * d
    if moe_layer:
        moe = cfg.moe
        experts = (2 if precision == "bf16-pure" else 4) * moe.top_k * (2 * moe.expert_hidden + d)
        return residual + experts + act * 2 * moe.shared_width
    return residual + act * (2 if cfg.mlp.kind in ("swiglu", "geglu") else 1) * cfg.mlp_hidden


def sdpa_output_copied(cfg: Config) -> bool:
    """Whether o_proj reads a copy of SDPA's output. RoPE leaves q in the projection's memory order,
    [b, s, H, d_h] seen as [b, H, s, d_h], and SDPA's output follows q's, so o_proj's [b, s, H d_h]
    view of it is free; when RoPE builds q with a concatenation (a partial rotation, GLM's two
    rotations) q is laid out head by head, and so is the output, and that view is a copy."""
    position = cfg.position
    return cfg.attention.kind == "mha" and (
        position.kind == "glm2d" or (position.kind == "rope" and position.rotary_fraction < 1)
    )


def attention_bytes(block: nn.Module, precision: str, output_copied: bool = False) -> float:
    """Bytes per token an attention sublayer keeps for its backward pass, past its input (the norm's
    output, counted with the norm; ``norm_bytes`` counts one bfloat16 cast of it under autocast).

    ``Attention``: its ``activation_values()`` at the activation dtype and a float32 log-sum-exp per
    head; with qk-norm, each norm's normalized values too (4 bytes: ``fast/norm.py`` keeps x / rms(x),
    or the float32 copy of a bfloat16 x, in float32, and two statistics per row). Under bf16 autocast: SDPA in float32
    (``fast/attention.py``) keeps Q, K and V in float32 (2 more bytes per value) and its float32
    output beside the bfloat16 copy o_proj reads (4 bytes per value); and q_proj, k_proj and v_proj
    each save their own bfloat16 cast of the input (2 more d). ``output_copied`` (``sdpa_output_copied``):
    o_proj's input is a copy of SDPA's output, which SDPA keeps as well (H d_h more; not under autocast,
    where o_proj's input is a bfloat16 cast of it anyway).
    ``MultiHeadLatentAttention``: ``absorbed_mla_bytes`` in absorbed mode, the one its configs train in."""
    if isinstance(block, MultiHeadLatentAttention) and block.mla_mode == "absorbed":
        return absorbed_mla_bytes(block, precision)
    act = PRECISION_BYTES[precision][2]
    kept = act * block.activation_values() + 4 * block.n_heads
    if isinstance(block, Attention):
        q_width, kv_width = block.n_heads * block.head_dim, block.n_kv_heads * block.head_dim
        if block.q_norm is not None:
            kept += 4 * (q_width + kv_width) + 8 * (block.n_heads + block.n_kv_heads)
        if precision == "bf16":
            kept += 2 * (q_width + 2 * kv_width) + 4 * q_width + 2 * 2 * block.q_proj.in_features
        if output_copied and precision != "bf16":  # under autocast o_proj reads a bfloat16 cast, counted above
            kept += act * q_width
    return kept


def absorbed_mla_bytes(block: MultiHeadLatentAttention, precision: str) -> float:
    """Bytes per token absorbed multi-head latent attention (its fast form, ``fast/mla.py``) keeps for
    its backward pass, past its input. With b the activation bytes, H heads, latent widths r (keys and
    values) and r_q (queries, 0 without), head widths d_n, d_R, d_v, and s = b (4 under bf16 autocast,
    where SDPA runs in float32, ``fast/attention.py``):

        c = RMSNorm(latent)         fp32: its input (a view of [c ; k_R], r + d_R wide) and x / rms(x), 4 each;
                                    otherwise the float32 copy of x (4 r) and the bfloat16 x / rms(x) (2 r);
                                    and ||x||, 1 / rms (8 bytes)
        q latent (r_q > 0)          the same norm on r_q values, and its output at b for W_UQ
        q                           b H (d_n + d_R): W_UK's product keeps q_N, a view of the whole q
        SDPA                        s (H (r + d_R) + (r + d_R) + H (r + d_R)): the absorbed query
                                    [W_UK^T q_N ; q_R], the key [c ; k_R] (also the value) and its output
        W_UV, o_proj inputs         b (H r + H d_v): the heads' latent outputs, stacked (a copy), and o_proj's
        log-sum-exp                 4 H;  under autocast one more bfloat16 cast of the input (2 d: the
                                    query and kv projections cast it separately)

    Checked against autograd's saved tensors (``tests/train/test_saved_activations.py``)."""
    act = PRECISION_BYTES[precision][2]
    sdpa = 4 if precision == "bf16" else act
    heads, r, rope, rq = block.n_heads, block.kv_lora_rank, block.rope_dim, block.q_lora_rank

    def latent_norm(width: int, stored: int) -> float:
        return (4 * (stored + width) if precision == "fp32" else 6 * width) + 8  # and ||x||, 1 / rms

    kept = latent_norm(r, r + rope)
    if rq:
        kept += latent_norm(rq, rq) + act * rq
    kept += act * heads * (block.nope_dim + rope)
    kept += sdpa * (2 * heads * (r + rope) + r + rope)
    kept += act * heads * (r + block.v_dim) + 4 * heads
    if precision == "bf16":
        kept += 2 * block.kv_a_proj.in_features
    return kept


def layer_bytes_per_token(cfg: Config, precision: str, moe_layer: bool = False, attention: float | None = None) -> float:
    """Bytes one decoder layer keeps per token for its backward pass (no checkpointing); ``attention``:
    the attention sublayer's ``attention_bytes``, when the caller already has it."""
    norms = 4 if cfg.norm.placement == "sandwich" else 2
    if attention is None:
        attention = attention_bytes(attention_on_meta(cfg), precision, sdpa_output_copied(cfg))
    return norms * norm_bytes(cfg, precision) + attention + mlp_bytes(cfg, precision, moe_layer)
