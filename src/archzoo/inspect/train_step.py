"""Peak memory of one step of archzoo's own training loop (``archzoo.train``), by precision and checkpointing.

The textbook figures in ``memory.py`` (ZeRO's 16 bytes per parameter, Korthikanti's
16-bit activations) describe a mixed-precision GPU recipe. This module counts what
``archzoo.train`` actually holds, tensor by tensor, so that its figure can be set
beside the live tensor bytes the loop measures (``archzoo.train.memory``).

Per trainable parameter, with s the state dtype's bytes (4; 2 for ``bf16-pure``):

    S  = weights (all parameters, at the model dtype) + 2 s (AdamW's first and second moments)
    G  = s                                        the gradients

Activations A kept for the backward pass, per token (b = act bytes: 4 fp32, else 2):

    per layer   norms       fp32: x, x / rms(x), the output: 3 x 4 d;  bf16 autocast: 4 d + 4 d + a 2 d
                            cast for the next matmul;  bf16-pure: x in fp32 4 d, 2 d + 2 d
                attention   the block's activation_values() x b (Q, K, V and the output,
                            as SDPA saves them) + a float32 log-sum-exp per head; bf16 autocast:
                            SDPA in float32 (fast/attention.py), Q, K, V and its output at 4 bytes
                            and the output again at 2 for o_proj (``attention_bytes``)
                MLP         SwiGLU / GeGLU: gate, its activation, up, their product: 4 h x b;
                            GeLU: 2 h x b;  MoE: per chosen expert 2 d + 4 h_e values, router 4 E bytes
    outside     the final norm as above, and the float32 log-softmax of the logits: 4 V;
                with the fused loss (below) instead dL/dh, formed in the forward: 4 d
    autocast    plus a bfloat16 copy of every weight a matmul uses (2 bytes each), kept for backward

With activation checkpointing a layer keeps only its input (4 d, or 2 d in bf16-pure);
one layer's activations are rebuilt at a time in the backward pass.

Two moments in the step are the candidates for the peak:

    backward starts   S + A + 2 L        L = 4 V per token: the float32 gradients of the
                                          log-softmax output and of the logits, both live at once
    optimizer step    S + G              archzoo runs AdamW fused (one kernel per tensor, no
                                          temporaries); torch's default per-op form would add two
                                          of the largest parameter's size (sqrt(v), then / bias correction)
    (checkpointing)   S + G + one layer   the first layer is recomputed while nearly every
                                          gradient exists

and the peak is the largest.

The fused loss (``fast/next_token_loss.py``, the default fast path, for a float32 plain head
when N V >= its ``MIN_LOGITS``, in fp32 and under bf16 autocast) forms no logits: L = 0, and
what it holds instead is the head's gradient dL/dW (4 V d, formed in the forward; full training
only) at backward start and its chunk buffer W_s = 4 rows V, kept between steps (``workspace``,
in every moment). Under bf16 autocast W_s is 6 rows V (a bfloat16 twin for the matmuls), autocast
keeps no bfloat16 copy of the head for the backward, and the loss's last moment is a candidate
for the peak: backward start + its own bfloat16 copies of W (2 V d) and h (2 d per token) + the
last chunk's bfloat16 dL/dW (2 V d, full training).

Not counted: the token ids, the RoPE / ALiBi tables and
other buffers (a few MB at most), Python and allocator overhead (see ``archzoo.train.memory``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from ..blocks.attention import Attention
from ..config import Config
from ..models.builders import attention_on_meta

PRECISION_BYTES = {"fp32": (4, 4, 4), "bf16": (4, 4, 2), "bf16-pure": (2, 2, 2)}
"""precision -> (weight bytes, optimizer-state and gradient bytes, activation bytes)."""


@dataclass(frozen=True)
class TrainingStepMemory:
    """Bytes of one training step of ``archzoo.train`` (see the module docstring)."""

    precision: str
    checkpointing: bool
    trainable_params: int
    weights: float
    optimizer_state: float
    gradients: float
    activations: float
    logit_gradients: float
    optimizer_temporaries: float
    peak: float
    peak_at: str  # "backward" | "optimizer step" | "recompute" | "loss" (| "layer backward": sharded_step.py)
    workspace: float = 0.0  # the fused loss's chunk buffer, kept between steps (fast/next_token_loss.py)
    world_size: int = 1  # processes sharing the model (FSDP2; sharded_step.py): every figure is per process
    gathered: float = 0.0  # sharded: the whole parameters gathered at the peak (root + layers + buffer)

    def to_dict(self) -> dict:
        return asdict(self)


def _norm_bytes(precision: str, d: int) -> float:
    return {"fp32": 12 * d, "bf16": 10 * d, "bf16-pure": 8 * d}[precision]


def _mlp_values(cfg: Config, moe_layer: bool) -> tuple[float, float]:
    """(values at the activation dtype, float32 bytes) the feed-forward sublayer keeps per token."""
    if moe_layer:
        moe = cfg.moe
        routed = moe.top_k * (2 * cfg.model.d_model + 4 * moe.expert_hidden)
        return routed + 4 * moe.shared_width, 4 * moe.n_experts
    return (4 if cfg.mlp.kind in ("swiglu", "geglu") else 2) * cfg.mlp_hidden, 0.0


def attention_bytes(block: nn.Module, precision: str) -> float:
    """Bytes per token an attention sublayer keeps for its backward pass: its ``activation_values()`` at
    the activation dtype and a float32 log-sum-exp per head. Under bf16 autocast the fast form of
    ``Attention`` runs SDPA in float32 (``fast/attention.py``), which keeps Q, K and V in float32 (2 more
    bytes per value) and its float32 output beside the bfloat16 copy o_proj reads (4 bytes per value);
    the reference's SDPA output is the o_proj input itself."""
    act = PRECISION_BYTES[precision][2]
    kept = act * block.activation_values() + 4 * block.n_heads
    if precision == "bf16" and isinstance(block, Attention):
        q_width, kv_width = block.n_heads * block.head_dim, block.n_kv_heads * block.head_dim
        kept += 2 * (q_width + 2 * kv_width) + 4 * q_width
    return kept


def layer_bytes_per_token(cfg: Config, precision: str, moe_layer: bool = False, attention: float | None = None) -> float:
    """Bytes one decoder layer keeps per token for its backward pass (no checkpointing); ``attention``:
    the attention sublayer's ``attention_bytes``, when the caller already has it."""
    act = PRECISION_BYTES[precision][2]
    d = cfg.model.d_model
    norms = 4 if cfg.norm.placement == "sandwich" else 2
    attention = attention_bytes(attention_on_meta(cfg), precision) if attention is None else attention
    mlp_values, mlp_fp32 = _mlp_values(cfg, moe_layer)
    return norms * _norm_bytes(precision, d) + attention + act * mlp_values + mlp_fp32


def fused_loss_rows(cfg: Config, precision: str, tokens: int, float32_head: bool = True) -> int:
    """Rows of the fused loss's chunk buffer when ``archzoo.train``'s step uses it, else 0: a float32
    plain head (``float32_head``: False where FSDP2 gathers it in bfloat16), fp32 or bf16 autocast."""
    from ..fast.next_token_loss import MIN_LOGITS, chunk_rows

    vocab = cfg.model.vocab_size
    if precision == "bf16-pure" or not float32_head or cfg.model.norm_head or tokens * vocab < MIN_LOGITS:
        return 0
    return chunk_rows(tokens, vocab)


def largest_parameter(cfg: Config) -> int:
    """Elements of the largest single parameter tensor (embedding, a projection, stacked experts)."""
    d = cfg.model.d_model
    sizes = [cfg.model.vocab_size * d, cfg.mlp_hidden * d * (2 if cfg.mlp.kind in ("swiglu", "geglu") else 1)]
    sizes.append(max(cfg.n_heads, cfg.n_kv_heads) * cfg.head_dim * d)
    if cfg.moe is not None:
        sizes.append(cfg.moe.n_experts * 2 * cfg.moe.expert_hidden * d)
    return max(sizes)


def training_step_memory(
    cfg: Config,
    *,
    batch: int,
    seq_len: int,
    params: int,
    precision: str = "fp32",
    checkpointing: bool = False,
    trainable: int | None = None,
    largest_trainable: int | None = None,
    extra_activation_bytes: float = 0.0,
    layer_activation_bytes: list[float] | None = None,
    outside_activation_bytes: float | None = None,
    recompute_working_bytes: float = 0.0,
    fused_optimizer: bool = True,
    float32_head: bool = True,
) -> TrainingStepMemory:
    """The peak of one step (see the module docstring).

    params: all parameters; trainable: those the optimizer updates (default: all);
    largest_trainable: elements of the largest trainable tensor (default: the config's
    largest; only the unfused optimizer needs it); fused_optimizer: AdamW(fused=True), as
    archzoo.train runs it; extra_activation_bytes: what an adapter adds to A (LoRA, prefixes);
    float32_head: the head's weight is float32 at its matmul (False: FSDP2's bfloat16 gather).
    """
    if precision not in PRECISION_BYTES:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISION_BYTES)}")
    weight_b, state_b, act_b = PRECISION_BYTES[precision]
    trainable = params if trainable is None else trainable
    largest = largest_parameter(cfg) if largest_trainable is None else largest_trainable
    tokens = batch * seq_len
    d, vocab = cfg.model.d_model, cfg.model.vocab_size
    attention = attention_bytes(attention_on_meta(cfg), precision)
    layers = [layer_bytes_per_token(cfg, precision, plan.mlp == "moe", attention) for plan in cfg.layer_plan]
    layers = list(layer_activation_bytes) if layer_activation_bytes is not None else layers
    outside = _norm_bytes(precision, d) + 4 * vocab if outside_activation_bytes is None else outside_activation_bytes
    fused_rows = fused_loss_rows(cfg, precision, tokens, float32_head)
    if fused_rows:
        outside += 4 * d - 4 * vocab  # dL/dh instead of the log-softmax
    head_copy = 0.0 if fused_rows else 2 * vocab * d  # the fused loss makes its own, gone by the backward
    weight_copies = 0.0
    if precision == "bf16":  # autocast's bfloat16 copies of the matmul weights; the embedding lookup is no matmul
        matmul_params = params - (0 if cfg.model.tie_embeddings else vocab * d)
        weight_copies = 2 * (matmul_params - vocab * d) + head_copy
    if checkpointing:
        kept_input = 2 * d if precision == "bf16-pure" else 4 * d
        activations = tokens * (len(layers) * kept_input + outside)
        if precision == "bf16":
            weight_copies = head_copy  # only the head's copy outlives the forward pass
    else:
        activations = tokens * (sum(layers) + outside)
    activations += weight_copies + extra_activation_bytes
    weights = params * weight_b
    state = 2 * trainable * state_b
    gradients = trainable * state_b
    logit_gradients = 2 * 4 * tokens * vocab
    workspace = 0.0
    if fused_rows:  # no logits: the head's gradient, formed in the forward (full training), instead
        logit_gradients = 4 * vocab * d if trainable == params else 0.0
        workspace = (4 + (2 if precision == "bf16" else 0)) * fused_rows * vocab  # + the bfloat16 twin
    temporaries = 0.0 if fused_optimizer else 2 * largest * state_b
    candidates = {
        "backward": weights + state + activations + logit_gradients + workspace,
        "optimizer step": weights + state + gradients + temporaries + workspace,
    }
    if fused_rows and precision == "bf16":  # the end of the loss: its bfloat16 copies of W and h, the last
        # chunk's bfloat16 dL/dW beside the float32 sum (full training)
        transient = 2 * vocab * d + 2 * tokens * d + (2 * vocab * d if trainable == params else 0.0)
        candidates["loss"] = candidates["backward"] + transient
    if checkpointing:
        candidates["recompute"] = weights + state + gradients + tokens * (max(layers) + recompute_working_bytes) + workspace
    peak_at = max(candidates, key=candidates.get)
    return TrainingStepMemory(
        precision=precision,
        checkpointing=checkpointing,
        trainable_params=trainable,
        weights=weights,
        optimizer_state=state,
        gradients=gradients,
        activations=activations,
        logit_gradients=logit_gradients,
        optimizer_temporaries=temporaries,
        workspace=workspace,
        peak=candidates[peak_at],
        peak_at=peak_at,
    )
