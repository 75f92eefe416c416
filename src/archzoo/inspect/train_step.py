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

from torch import nn

from ..blocks.attention import Attention
from ..blocks.mla import MultiHeadLatentAttention
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
    peak_at: str  # "backward" | "layer backward" | "optimizer step" | "recompute" | "loss" (| "root reduce-scatter": sharded)
    workspace: float = 0.0  # the fused loss's chunk buffer, kept between steps (fast/next_token_loss.py)
    world_size: int = 1  # processes sharing the model (FSDP2; sharded_step.py): every figure is per process
    gathered: float = 0.0  # sharded: the whole parameters gathered at the peak (root + layers + buffer)

    def to_dict(self) -> dict:
        return asdict(self)


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
