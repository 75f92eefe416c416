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
    attention   what SDPA keeps: Q, K, V, its output (and qk-norm inputs), as for full training
    MLP         SwiGLU / GeGLU: the gate, its activation and the up projection (3 h); GeLU: its input (h)
    LoRA        per adapted layer its A's input, when no one else keeps it (a norm output, d; the
                o_proj / down_proj input, H d_h / h), and h = A x (r values)

Outside the layers: the final norm's input and the log-softmax of the logits (4 V, float32).
With activation checkpointing the peak comes while one layer is recomputed and its MLP
runs backward: beside that layer's activations live the gradients of the gate, its
activation, the up projection and their product (4 h; 3 h for GeLU; measured 3.4 h and 2.8 h).
A prefix of P slots adds, per sequence and layer, the P keys and values SDPA keeps (2 G d_h P).
MoE and MLA layers keep their full-training figures (``train_step.py``), an overestimate there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import Config
from .train_step import PRECISION_BYTES, attention_bytes, mlp_bytes, sdpa_output_copied

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
        attention = attention_bytes(layer.attn, precision, sdpa_output_copied(cfg))
        if moe:
            mlp = mlp_bytes(cfg, precision, True)
        else:
            mlp = (3 if cfg.mlp.kind in ("swiglu", "geglu") else 1) * cfg.mlp_hidden * act_b
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
        recompute_bytes=(4 if gated else 3) * cfg.mlp_hidden * act_b,
    )
