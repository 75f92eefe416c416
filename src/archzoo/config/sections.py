"""One frozen dataclass per TOML section. No torch here.

Every field has a default (or is required), a unit and a rule; the rules are
checked in ``validate.py``. Derived sizes live as properties on ``Config``
(``config/model_config.py``), never as mutated fields; what depends on an
attention kind is asked of ``AttentionSection`` so that a new kind is described
here (and in ``validate.py``) only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .moe_section import GroupScore, MoESection, RouterScoring  # noqa: F401 - [moe] has its own file; names kept here

NormKind = Literal["rmsnorm", "layernorm"]
NormPlacement = Literal["pre", "post", "deepnorm", "sandwich"]
FROM_NORMED_PLACEMENTS = ("pre", "deepnorm")  # placements with a residual_from_normed form
AttentionKind = Literal["mha", "mla"]
MLAMode = Literal["naive", "absorbed"]
PositionKind = Literal["rope", "alibi", "glm2d", "none"]
RopeLayout = Literal["half", "interleaved"]
RopeScalingKind = Literal["linear", "llama3", "yarn"]
MLPKind = Literal["swiglu", "geglu", "gelu"]
GeluApproximate = Literal["none", "tanh"]
GatedHalfOrder = Literal["gate_first", "value_first"]


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: sizes of the token pipeline.

    vocab_size: tokens in the embedding table (> 0).
    d_model: width of the residual stream (> 0).
    n_layers: decoder layers (> 0).
    max_seq_len: longest sequence the positions are meant for (tokens, > 0).
    tie_embeddings: the output head reuses the input embedding matrix.
    embedding_norm: a norm right after the embedding (BLOOM's word_embeddings_layernorm).
    embedding_grad_scale: GLM-130B's embedding gradient shrink, alpha_egs in (0, 1];
        1 means off. Forward values never change.
    mtp_layers: DeepSeek-V3 multi-token-prediction modules; counted apart from
        the main model, never built into it (>= 0).
    norm_head: Baichuan 2's NormHead: the output head's rows are L2-normalised
        before the product, logits = h . normalize(W)^T (``blocks/norm_head.py``).
    init_std: standard deviation of the normal init of weights (> 0).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    max_seq_len: int = 2048
    tie_embeddings: bool = False
    embedding_norm: bool = False
    embedding_grad_scale: float = 1.0
    mtp_layers: int = 0
    norm_head: bool = False
    init_std: float = 0.02


@dataclass(frozen=True)
class NormSection:
    """``[norm]``: which normalisation, and where it sits around each sublayer.

    kind: ``rmsnorm`` (Zhang & Sennrich 2019) or ``layernorm`` (Ba et al. 2016, with bias).
    eps: added to the variance (> 0).
    placement:
        ``pre``      h = x + F(N(x))                       (GPT-2, LLaMA)
        ``post``     h = N(x + F(x))                       (Vaswani et al. 2017)
        ``deepnorm`` h = N(alpha*x + F(x))                 (DeepNet, Wang et al. 2022)
        ``sandwich`` h = x + N_post(F(N(x)))               (GLM-4-0414)
    residual_from_normed: the residual is the *normalised* input (Hugging Face's
        ``apply_residual_connection_post_layernorm``), with ``pre`` or ``deepnorm``:
        ``pre``      a = N(x); h = a + F(a)            (BLOOM's option)
        ``deepnorm`` a = N(x); h = alpha*a + F(a)      (ChatGLM-6B)
    deepnorm_alpha: residual scale; unset means (2N)^0.5 with N = n_layers (GLM-130B).
    deepnorm_beta: init gain of the sublayer output/value weights; unset means (2N)^-0.5.
    """

    kind: NormKind = "rmsnorm"
    eps: float = 1e-5
    placement: NormPlacement = "pre"
    residual_from_normed: bool = False
    deepnorm_alpha: float | None = None
    deepnorm_beta: float | None = None


@dataclass(frozen=True)
class AttentionSection:
    """``[attention]``: self-attention heads.

    kind: ``mha`` (covers MHA / GQA / MQA through n_kv_heads) or ``mla``
        (multi-head latent attention, DeepSeek-V2).
    n_heads: query heads (> 0).
    n_kv_heads: key/value heads; unset = n_heads (MHA), 1 = MQA, else GQA.
        Must divide n_heads.
    head_dim: width of one head; unset = d_model / n_heads (which must divide).
    qkv_bias: bias on the q, k, v projections (Qwen2, BLOOM, GLM-4).
    o_bias: bias on the output projection (BLOOM, ChatGLM-6B).
    qk_norm: RMSNorm over head_dim on q and k before RoPE (Qwen3).
    softmax_scale: multiplies q.k; unset = 1/sqrt(query-key head width).
    q_lora_rank: MLA query compression rank; 0 = no low-rank query stage.
    kv_lora_rank: MLA key/value latent width (> 0 for mla).
    qk_nope_head_dim / qk_rope_head_dim / v_head_dim: MLA per-head widths.
    mla_mode: ``naive`` (decompress K, V per head) or ``absorbed`` (attend over the latent).
    """

    n_heads: int
    kind: AttentionKind = "mha"
    n_kv_heads: int | None = None
    head_dim: int | None = None
    qkv_bias: bool = False
    o_bias: bool = False
    qk_norm: bool = False
    softmax_scale: float | None = None
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    mla_mode: MLAMode = "absorbed"

    def qk_width(self, head_dim: int) -> int:
        """Width over which q.k is taken in one head: head_dim; nope + rope dims for MLA."""
        if self.kind == "mla":
            return self.qk_nope_head_dim + self.qk_rope_head_dim
        return head_dim

    def rotated_width(self, head_dim: int, rotary_fraction: float) -> int:
        """Dims of a head that RoPE rotates: fraction x head_dim; MLA's decoupled rope dims."""
        if self.kind == "mla":
            return self.qk_rope_head_dim
        return int(head_dim * rotary_fraction)

    def cached_heads(self, n_kv_heads: int) -> int | None:
        """Heads whose keys and values the cache holds: n_kv_heads; None for MLA's shared latent."""
        if self.kind == "mla":
            return None
        return n_kv_heads

    def describe(self, n_kv_heads: int) -> str:
        """A few words for ``archzoo list``: ``mha 32h``, ``gqa 32/8``, ``mqa 8h``, ``mla(r=512+64)``."""
        if self.kind == "mla":
            return f"mla(r={self.kv_lora_rank}+{self.qk_rope_head_dim})"
        if n_kv_heads == self.n_heads:
            return f"mha {self.n_heads}h"
        if n_kv_heads == 1:
            return f"mqa {self.n_heads}h"
        return f"gqa {self.n_heads}/{n_kv_heads}"


@dataclass(frozen=True)
class RopeScalingSection:
    """``[position.scaling]``: context-extension of RoPE frequencies.

    kind: ``linear`` (positions / factor), ``llama3`` (Llama 3.1 wavelength bands),
        ``yarn`` (Peng et al. 2023, with attention temperature).
    factor: context extension factor (> 0).
    original_max_seq_len: the pre-extension context (llama3, yarn).
    low_freq_factor / high_freq_factor: llama3 band edges.
    beta_fast / beta_slow: yarn ramp in rotations.
    mscale / mscale_all_dim: yarn temperature terms (DeepSeek-V2/V3).
    """

    kind: RopeScalingKind
    factor: float
    original_max_seq_len: int | None = None
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0
    mscale: float = 1.0
    mscale_all_dim: float = 0.0


@dataclass(frozen=True)
class PositionSection:
    """``[position]``: how token order enters attention.

    kind: ``rope`` (Su et al. 2021), ``alibi`` (Press et al. 2022),
        ``glm2d`` (GLM's two RoPEs: position and block position), ``none``.
    theta: RoPE base (> 0).
    rotary_fraction: share of each head's dims that rotate, in (0, 1]; the
        rotated width must be even.
    layout: ``half`` pairs (i, i + r/2) (GPT-NeoX, HF LLaMA), ``interleaved``
        pairs (2i, 2i + 1) (Meta LLaMA, ChatGLM2, DeepSeek MLA).
    fp16_frequencies: round the inverse frequencies to float16 (ChatGLM-6B's code does).
    scaling: optional ``[position.scaling]`` table.
    """

    kind: PositionKind = "rope"
    theta: float = 10000.0
    rotary_fraction: float = 1.0
    layout: RopeLayout = "half"
    fp16_frequencies: bool = False
    scaling: RopeScalingSection | None = None


@dataclass(frozen=True)
class MLPSection:
    """``[mlp]``: the position-wise feed-forward block.

    kind: ``gelu`` (W2 GeLU(W1 x)), ``swiglu`` / ``geglu`` (W2 (act(Wg x) * Wu x), Shazeer 2020).
    hidden: inner width; unset = the LLaMA rule from multiple_of (and ffn_dim_multiplier).
    multiple_of / ffn_dim_multiplier: LLaMA's rule
        h = multiple_of * ceil(mult * int(8 d / 3) / multiple_of).
    bias: biases on every MLP projection (BLOOM, ChatGLM-6B).
    gelu_approximate: ``none`` (erf GeLU) or ``tanh`` (GPT-2 / BLOOM approximation).
    gated_half_order: for checkpoints that fuse the gated pair into one matrix:
        ``gate_first`` (ChatGLM2, GLM-4: act(first half) * second half) or
        ``value_first`` (GLM-130B GeGLU: first half * act(second half)).
    """

    kind: MLPKind = "swiglu"
    hidden: int | None = None
    multiple_of: int | None = None
    ffn_dim_multiplier: float | None = None
    bias: bool = False
    gelu_approximate: GeluApproximate = "none"
    gated_half_order: GatedHalfOrder = "gate_first"


@dataclass(frozen=True)
class TokensSection:
    """``[tokens]``: special token ids (optional; each must be < vocab_size).

    GLM's ids: mask ``[MASK]``, smask ``[sMASK]``, gmask ``[gMASK]``,
    sop ``<sop>``/``[S]`` (start of a Part-B piece), eop ``<eop>``/``[E]``.
    """

    bos_id: int | None = None
    eos_id: int | None = None
    pad_id: int | None = None
    mask_id: int | None = None
    smask_id: int | None = None
    gmask_id: int | None = None
    sop_id: int | None = None
    eop_id: int | None = None


SECTIONS = {
    "model": ModelSection,
    "norm": NormSection,
    "attention": AttentionSection,
    "position": PositionSection,
    "mlp": MLPSection,
    "moe": MoESection,
    "tokens": TokensSection,
}
"""TOML section name -> dataclass. ``model`` and ``attention`` are required."""
