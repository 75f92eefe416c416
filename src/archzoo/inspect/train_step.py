"""Peak memory of one step of archzoo's own training loop (``archzoo.train``), by precision and checkpointing.

The textbook figures in ``memory.py`` (ZeRO's 16 bytes per parameter, Korthikanti's
16-bit activations) describe a mixed-precision GPU recipe. This module counts what
``archzoo.train`` actually holds, tensor by tensor, so that its figure can be set
beside the live tensor bytes the loop measures (``archzoo.train.memory``).

Per trainable parameter, with s the state dtype's bytes (4; 2 for ``bf16-pure``):

    S  = weights (all parameters, at the model dtype) + 2 s (AdamW's first and second moments)
    G  = s                                        the gradients

Activations A kept for the backward pass, per token (b = act bytes: 4 fp32, else 2):

    per layer   norms       RMSNorm, fp32: x, x / rms(x), the output: 3 x 4 d;  bf16 autocast: 4 d + 4 d
                            + a 2 d cast for the next matmul;  bf16-pure: x in fp32 4 d, 2 d + 2 d;
                            LayerNorm keeps no normalized copy (its backward recomputes it from the
                            saved mean and 1/std): 8 d, 6 d, 4 d (``norm_bytes``)
                attention   the block's activation_values() x b (Q, K, V and the output,
                            as SDPA saves them) + a float32 log-sum-exp per head, qk-norm's
                            normalized values; bf16 autocast: SDPA in float32 (fast/attention.py),
                            Q, K, V and its output at 4 bytes and the output again at 2 for o_proj;
                            multi-head latent attention as its absorbed form keeps it
                            (``attention_bytes``, ``absorbed_mla_bytes``)
                MLP         SwiGLU / GeGLU: gate, its activation, up, their product: 4 h x b;
                            GeLU: 2 h x b;  MoE: per chosen expert 2 d + 5 h_e values (float32
                            under autocast), the router's probabilities and bookkeeping, shared
                            experts (``mlp_bytes``)
    outside     the final norm as above (and BLOOM's embedding norm), and the float32 log-softmax
                of the logits: 4 V; with the fused loss (below) instead dL/dh, formed in the forward: 4 d
    autocast    plus a bfloat16 copy of every weight a matmul uses (2 bytes each), kept for backward

With activation checkpointing a layer keeps only its input (4 d, or 2 d in bf16-pure);
one layer's activations are rebuilt at a time in the backward pass.

Two moments in the step are the candidates for the peak:

    backward starts   S + A + 2 L        L = 4 V per token: the float32 gradients of the
                                          log-softmax output and of the logits, both live at once
    optimizer step    S + G              archzoo runs AdamW fused (one kernel per tensor, no
                                          temporaries); torch's default per-op form would add two
                                          of the largest parameter's size (sqrt(v), then / bias correction)
    a layer's backward  S + A - loss + H + W_b   the last layer's MLP running backward: every
                                          layer's activations, the loss's gone (the log-softmax,
                                          or the fused loss's dL/dh), the head's gradient H
                                          (full training) and the layer's working set W_b
    (checkpointing)   S + max(G, kept inputs of all layers but one) + one layer + W_b
                                          a recomputed layer's MLP running backward: the first
                                          layer's (nearly every gradient made) or the last's
                                          (every earlier layer's input still kept)

and the peak is the largest. W_b (``backward_working_bytes``) is what a layer's backward holds
beyond what its forward kept, at its fullest, inside the MLP's backward: the residual stream's
gradient (d) and the MLP's own gradients. SwiGLU / GeGLU: once down_proj has its weight gradient
the product g' u it kept is freed, and the gradients of the product, then of the gate's activation
and of up, are live at once: 4 saved - 1 + 3 = 6 h at the fullest, 2 h more than the forward kept.
GeLU: its output is freed the same way and the gradients of its output and input sit beside its
input: 3 h against 2 h kept, h more. (Measured, llama-tiny 16 x 128 with checkpointing: 33.9 MiB
live against 27.7 MiB without W_b and 33.7 MiB with it.)

The fused loss (``fast/next_token_loss.py``, the default fast path, for a float32 plain head
when N V >= its ``MIN_LOGITS``, in fp32 and under bf16 autocast) forms no logits: L = 0, and
what it holds instead is the head's gradient dL/dW (4 V d, formed in the forward; full training
only) at backward start and its chunk buffer W_s = 4 rows V, kept between steps (``workspace``,
in every moment). Under bf16 autocast W_s is 6 rows V (a bfloat16 twin for the matmuls), autocast
keeps no bfloat16 copy of the head for the backward, and the loss's last moment is a candidate
for the peak: backward start + its own bfloat16 copies of W (2 V d) and h (2 d per token) + the
last chunk's bfloat16 dL/dW (2 V d, full training).

Each sublayer's term is checked against the tensors autograd saves (``tests/train/test_saved_activations.py``:
equal to the byte for every tiny config's attention and dense MLP, within 1.2% for MoE), and the
whole step against the measured peak (``tests/train/test_train_memory.py``: within 6% on one config of
every block kind, in every precision, with and without checkpointing, at 16 x 128 tokens).

Not counted: the token ids, the RoPE / ALiBi tables and other buffers (a few MB at most), the
float copy of a boolean attention mask SDPA makes in each layer (4 s^2 bytes a layer: 64 MB at
s = 4096), Python and allocator overhead (see ``archzoo.train.memory``). Multi-head latent
attention trained in naive mode is counted as the textbook decompressed form; there SDPA's
narrower value takes its generic path, which also keeps the s x s probabilities per head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import Config
from ..models.builders import attention_on_meta
from .saved_activations import (
    PRECISION_BYTES,
    attention_bytes,
    backward_working_bytes,
    layer_bytes_per_token,
    outside_bytes,
    sdpa_output_copied,
)


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
    peak_at: str  # "backward" | "layer backward" | "optimizer step" | "recompute" | "loss" (| "root reduce-scatter": sharded)
    workspace: float = 0.0  # the fused loss's chunk buffer, kept between steps (fast/next_token_loss.py)
    world_size: int = 1  # processes sharing the model (FSDP2; sharded_step.py): every figure is per process
    gathered: float = 0.0  # sharded: the whole parameters gathered at the peak (root + layers + buffer)

    def to_dict(self) -> dict:
        return asdict(self)


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
    recompute_working_bytes: float | None = None,
    fused_optimizer: bool = True,
    float32_head: bool = True,
) -> TrainingStepMemory:
    """The peak of one step (see the module docstring).

    params: all parameters; trainable: those the optimizer updates (default: all);
    largest_trainable: elements of the largest trainable tensor (default: the config's
    largest; only the unfused optimizer needs it); fused_optimizer: AdamW(fused=True), as
    archzoo.train runs it; extra_activation_bytes: what an adapter adds to A (LoRA, prefixes);
    float32_head: the head's weight is float32 at its matmul (False: FSDP2's bfloat16 gather);
    recompute_working_bytes: per token, a layer's backward working set W_b (default: full training's,
    ``backward_working_bytes``; a frozen base keeps less and so holds more, see ``adapter_memory``).
    """
    if precision not in PRECISION_BYTES:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISION_BYTES)}")
    weight_b, state_b, act_b = PRECISION_BYTES[precision]
    trainable = params if trainable is None else trainable
    largest = largest_parameter(cfg) if largest_trainable is None else largest_trainable
    tokens = batch * seq_len
    d, vocab = cfg.model.d_model, cfg.model.vocab_size
    attention = attention_bytes(attention_on_meta(cfg), precision, sdpa_output_copied(cfg))
    layers = [layer_bytes_per_token(cfg, precision, plan.mlp == "moe", attention) for plan in cfg.layer_plan]
    layers = list(layer_activation_bytes) if layer_activation_bytes is not None else layers
    working = recompute_working_bytes
    if working is None:
        working = max(backward_working_bytes(cfg, precision, plan.mlp == "moe") for plan in cfg.layer_plan)
    outside = outside_bytes(cfg, precision) + 4 * vocab if outside_activation_bytes is None else outside_activation_bytes
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
        # the last layer's recompute, with every earlier layer's kept input, or the first's, with nearly
        # every gradient (the larger one: a frozen base has few gradients, full training many)
        earlier_inputs = tokens * (len(layers) - 1) * kept_input
        candidates["recompute"] = (
            weights + state + max(gradients, earlier_inputs) + tokens * (max(layers) + working) + workspace
        )
    else:  # the last layer's backward: the loss's activations and logit gradients gone, the head's gradient made
        loss_outside = 4 * d if fused_rows else 4 * vocab
        head_gradient = state_b * vocab * d if trainable == params else 0.0
        candidates["layer backward"] = (
            weights + state + activations - tokens * loss_outside + head_gradient + tokens * working + workspace
        )
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
