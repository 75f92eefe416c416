"""What LoRA and P-tuning v2 change in the memory of a training step (``estimate_memory``).

Counted on the config's ``meta`` model with the adapters added (no allocation):
the adapters' parameters (trainable, with their gradients and AdamW moments; the
base keeps only its weights) and the largest of them.

Activations change because the base is frozen: a linear layer with a frozen
weight keeps nothing of its input (its input gradient needs only W), so per
token and decoder layer the backward pass keeps, at the activation dtype
(norm inputs: the residual stream's dtype):

    norms       each norm's input x (d; not the first layer's attention norm, whose
                input, the embedding, needs no gradient)
    attention   what SDPA keeps: Q, K, V, its output (and qk-norm inputs, in float32)
    MLP         SwiGLU / GeGLU: the gate, its activation and the up projection (3 h); GeLU: its input (h)
    LoRA        per adapted layer its A's input, when no one else keeps it (a norm output, d; the
                o_proj / down_proj input, H d_h / h), and h = A x (r values)

Outside the layers: the final norm's input and the log-softmax of the logits (4 V, float32).
With activation checkpointing the peak comes while one layer is recomputed and its MLP
runs backward: beside that layer's activations live the gradients of the gate, its
activation and the up projection (3 h; for GeLU those of its output and its input, 2 h), and the
residual stream's gradient (d); and every earlier layer's kept input is still there.
A prefix of P slots adds, per sequence and layer, the P keys and values SDPA keeps (2 G d_h P).
MoE layers and multi-head latent attention: ``frozen_mlp_bytes``, ``frozen_attention_bytes``.
Each frozen sublayer's figure is checked against autograd's saved tensors
(``tests/train/test_saved_activations.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..blocks.attention import Attention
from ..blocks.mla import MultiHeadLatentAttention
from ..config import Config
from .saved_activations import PRECISION_BYTES, attention_bytes, router_bytes

NORM_OUTPUT_READERS = {"attn": ("q_proj", "k_proj", "v_proj", "q_a_proj", "kv_a_proj"), "mlp": ("gate_proj", "up_proj")}
"""LoRA targets whose A reads a norm's output (so it is kept once, whoever else reads it)."""


@dataclass(frozen=True)
class AdapterCost:
    """Inputs to ``training_step_memory`` for a model with a frozen base and adapters."""

    adapter_params: int
    largest_adapter: int
    layer_bytes: list[float]  # per token, per decoder layer
    outside_bytes: float  # per token: final norm input, log-softmax
    extra_bytes: float  # per step: a prefix's keys and values
    recompute_bytes: float  # per token: an MLP's gradients during a recomputed layer's backward


def frozen_attention_bytes(block, precision: str) -> float:
    """Bytes per token a frozen attention sublayer keeps, past its input: what SDPA keeps (its query,
    key, value and output, in float32 under bf16 autocast: ``fast/attention.py``; absorbed multi-head
    latent attention's query, its key [c ; k_R] that is also its value, and its output) and its
    log-sum-exp, and the inputs of its norms (qk-norm, MLA's latent norms: in float32, with two
    statistics a row). Frozen projections and norm gains keep nothing else: no bfloat16 casts, no
    o_proj input, no normalized copies (``saved_activations.attention_bytes`` is full training's figure)."""
    act = PRECISION_BYTES[precision][2]
    sdpa = 4 if precision == "bf16" else act
    if isinstance(block, MultiHeadLatentAttention) and block.mla_mode == "absorbed":
        heads, r, rope, rq = block.n_heads, block.kv_lora_rank, block.rope_dim, block.q_lora_rank
        kept = sdpa * (2 * heads * (r + rope) + r + rope) + 4 * heads
        kept += 4 * ((r + rope) if precision == "fp32" else r) + 8  # c's norm: its input (a view of [c ; k_R]), or its float32 copy
        return kept + (4 * rq + 8 if rq else 0)
    if not isinstance(block, Attention):
        return attention_bytes(block, precision)
    q_width, kv_width = block.n_heads * block.head_dim, block.n_kv_heads * block.head_dim
    kept = sdpa * (2 * q_width + 2 * kv_width) + 4 * block.n_heads
    if block.q_norm is not None:
        kept += 4 * (q_width + kv_width) + 8 * (block.n_heads + block.n_kv_heads)
    return kept


def frozen_mlp_bytes(cfg: Config, precision: str, moe_layer: bool) -> float:
    """Bytes per token a frozen feed-forward sublayer keeps, past its input: SwiGLU / GeGLU the gate,
    its activation and up (3 h), GeLU its input (h); MoE per chosen expert its gate and up, the gate's
    activation, the weighted product and the expert's output (d + 4 h_e, in float32 under autocast as
    the experts run: ``saved_activations.mlp_bytes``), the router's probabilities and bookkeeping as in full
    training, shared experts as a frozen gated MLP (3 h_s) and a sigmoid gate's scaled output (d)."""
    act = PRECISION_BYTES[precision][2]
    if not moe_layer:
        return (3 if cfg.mlp.kind in ("swiglu", "geglu") else 1) * cfg.mlp_hidden * act
    moe, d = cfg.moe, cfg.model.d_model
    kept = moe.top_k * (d + 4 * moe.expert_hidden) * (2 if precision == "bf16-pure" else 4)
    kept += router_bytes(moe, precision)
    if moe.shared_width:
        kept += 3 * moe.shared_width * act + (d * act + 4 if moe.shared_gate else 0)
    return kept


def adapter_cost(
    cfg: Config,
    *,
    batch: int,
    precision: str,
    lora_rank: int | None = None,
    lora_targets: Sequence[str] = ("q_proj", "v_proj"),
    prefix_length: int | None = None,
    prefix_projection: bool | int = False,
) -> AdapterCost:
    from ..adapters import add_lora, add_prefix
    from ..adapters.lora import lora_layers
    from ..models.decoder import build_model

    _, _, act_b = PRECISION_BYTES[precision]
    res_b = 2 if precision == "bf16-pure" else 4  # the residual stream stays float32 under autocast
    model = build_model(cfg, device="meta")
    if lora_rank is not None:
        add_lora(model, rank=lora_rank, targets=lora_targets)
    if prefix_length is not None:
        add_prefix(model, length=prefix_length, projection=prefix_projection)
    adapters = [p for p in model.parameters() if p.requires_grad]
    adapted = lora_layers(model)
    d, heads, head_dim = cfg.model.d_model, cfg.n_heads, cfg.head_dim
    layer_bytes = []
    for index, layer in enumerate(model.layers):
        moe = layer.plan.mlp == "moe"
        mine = {name.split(".", 2)[2]: m for name, m in adapted.items() if name.startswith(f"layers.{index}.")}
        last = {name.rsplit(".", 1)[-1] for name in mine}
        norms = (2 if index > 0 else 1) * d * res_b
        attention = frozen_attention_bytes(layer.attn, precision)
        mlp = frozen_mlp_bytes(cfg, precision, moe)
        lora = sum(m.rank for m in mine.values()) * act_b
        lora += sum(d * act_b for readers in NORM_OUTPUT_READERS.values() if last & set(readers))
        lora += heads * head_dim * act_b if "o_proj" in last else 0
        lora += cfg.mlp_hidden * act_b if "down_proj" in last and not moe else 0
        layer_bytes.append(norms + attention + mlp + lora)
    outside = d * res_b + 4 * cfg.model.vocab_size
    extra = 0.0
    if prefix_length is not None:
        prefix_b = 4 if precision == "bf16" else act_b  # under autocast SDPA keeps them in float32 (fast/attention.py)
        extra = cfg.model.n_layers * batch * 2 * cfg.n_kv_heads * head_dim * prefix_length * prefix_b
    gated = cfg.mlp.kind in ("swiglu", "geglu")
    return AdapterCost(
        adapter_params=sum(p.numel() for p in adapters),
        largest_adapter=max(p.numel() for p in adapters),
        layer_bytes=layer_bytes,
        outside_bytes=outside,
        extra_bytes=extra,
        recompute_bytes=(3 if gated else 2) * cfg.mlp_hidden * act_b + res_b * d,  # and the residual stream's gradient
    )
