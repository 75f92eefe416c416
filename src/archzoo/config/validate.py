"""Rules a config must keep, checked at load time so that no bad config
surfaces later as a tensor shape error deep in a forward pass."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError
from .limits import check_numbers
from .sections import FROM_NORMED_PLACEMENTS

if TYPE_CHECKING:
    from .model_config import Config


def validate(c: Config, source: str) -> None:
    """Raise ``ConfigError`` (file, field, rule) for the first broken rule."""

    def fail(field: str, rule: str) -> None:
        raise ConfigError(source, field, rule)

    def positive(section: str, obj, *names: str) -> None:
        for n in names:
            v = getattr(obj, n)
            if v is not None and v <= 0:
                fail(f"{section}.{n}", f"must be > 0, got {v}")

    check_numbers(c, fail)
    m, n, mlp = c.model, c.norm, c.mlp
    positive("model", m, "vocab_size", "d_model", "n_layers", "max_seq_len", "init_std")
    if m.mtp_layers < 0:
        fail("model.mtp_layers", f"must be >= 0, got {m.mtp_layers}")
    if not 0 < m.embedding_grad_scale <= 1:
        fail("model.embedding_grad_scale", f"must be in (0, 1], got {m.embedding_grad_scale}")

    positive("norm", n, "eps", "deepnorm_alpha", "deepnorm_beta")
    for key in ("deepnorm_alpha", "deepnorm_beta"):
        if getattr(n, key) is not None and n.placement != "deepnorm":
            fail(f"norm.{key}", f"only applies with placement = 'deepnorm', not {n.placement!r}; remove it")
    if n.residual_from_normed and n.placement not in FROM_NORMED_PLACEMENTS:
        fail(
            "norm.residual_from_normed",
            "only applies with placement = 'pre' (BLOOM's option) or 'deepnorm' (ChatGLM-6B)",
        )

    _check_attention(c, fail, positive)
    _check_position(c, fail, positive)

    positive("mlp", mlp, "hidden", "multiple_of", "ffn_dim_multiplier")
    if mlp.hidden is None and mlp.multiple_of is None:
        fail("mlp.hidden", "set hidden, or multiple_of for LLaMA's sizing rule")
    if mlp.hidden is not None and (mlp.multiple_of is not None or mlp.ffn_dim_multiplier is not None):
        fail(
            "mlp.multiple_of",
            "hidden is set, so LLaMA's rule (multiple_of, ffn_dim_multiplier) would be ignored; set one or the other",
        )
    if mlp.hidden is None and not 1 <= c.mlp_hidden <= 2**24:
        fail(
            "mlp.ffn_dim_multiplier" if mlp.ffn_dim_multiplier is not None else "mlp.multiple_of",
            f"LLaMA's rule gives an MLP width of {c.mlp_hidden:,}; it must be in [1, 2^24]",
        )
    if mlp.kind == "swiglu" and mlp.gelu_approximate != "none":
        fail("mlp.gelu_approximate", "only applies to kind = 'gelu' or 'geglu' (swiglu uses SiLU)")
    if mlp.kind == "gelu" and mlp.gated_half_order != "gate_first":
        fail("mlp.gated_half_order", "only applies to the gated kinds 'swiglu' and 'geglu'")

    if c.moe is not None:
        _check_moe(c, fail, positive)

    for key in ("bos_id", "eos_id", "pad_id", "mask_id", "smask_id", "gmask_id", "sop_id", "eop_id"):
        value = getattr(c.tokens, key)
        if value is not None and not 0 <= value < m.vocab_size:
            fail(f"tokens.{key}", f"must be in [0, vocab_size={m.vocab_size}), got {value}")


def _check_attention(c: Config, fail, positive) -> None:
    a, d_model = c.attention, c.model.d_model
    positive("attention", a, "n_heads", "n_kv_heads", "head_dim", "softmax_scale")
    if a.n_kv_heads is not None and a.n_heads % a.n_kv_heads:
        fail("attention.n_kv_heads", f"must divide n_heads ({a.n_heads}), got {a.n_kv_heads}")
    if a.kind == "mha":
        if a.head_dim is None and d_model % a.n_heads:
            fail(
                "attention.n_heads",
                f"d_model ({d_model}) must be a multiple of n_heads ({a.n_heads}) unless head_dim is set",
            )
        for key in ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
            if getattr(a, key):
                fail(f"attention.{key}", "only applies to kind = 'mla'")
        if a.mla_mode != "absorbed":
            fail("attention.mla_mode", "only applies to kind = 'mla'; remove it")
        return
    # multi-head latent attention
    for key in ("kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"):
        if getattr(a, key) <= 0:
            fail(f"attention.{key}", "must be > 0 for kind = 'mla'")
    if a.q_lora_rank < 0:
        fail("attention.q_lora_rank", f"must be >= 0 (0 = no query compression), got {a.q_lora_rank}")
    if a.qk_rope_head_dim % 2:
        fail("attention.qk_rope_head_dim", f"RoPE rotates pairs, so it must be even, got {a.qk_rope_head_dim}")
    for key in ("n_kv_heads", "head_dim"):
        if getattr(a, key) is not None:
            fail(f"attention.{key}", "does not apply to kind = 'mla' (it has its own head widths)")
    if a.qk_norm:
        fail("attention.qk_norm", "does not apply to kind = 'mla' (its latents carry their own norms)")
    if c.position.kind != "rope":
        fail("position.kind", "kind = 'mla' needs 'rope' (its decoupled key is rotated)")
    if c.position.rotary_fraction != 1:
        fail("position.rotary_fraction", "does not apply to kind = 'mla' (it rotates its qk_rope_head_dim dims); remove it")


def _check_position(c: Config, fail, positive) -> None:
    p = c.position
    positive("position", p, "theta")
    defaults = type(p)()
    rope_only = ("theta", "rotary_fraction", "layout", "fp16_frequencies")
    ignored = {"alibi": rope_only, "none": rope_only, "glm2d": ("rotary_fraction", "layout")}
    for key in ignored.get(p.kind, ()):
        if getattr(p, key) != getattr(defaults, key):
            fail(f"position.{key}", f"does not apply to kind = {p.kind!r}; remove it")
    if not 0 < p.rotary_fraction <= 1:
        fail("position.rotary_fraction", f"must be in (0, 1], got {p.rotary_fraction}")
    rotated = c.head_dim * p.rotary_fraction
    if p.kind == "rope" and c.attention.kind == "mha" and rotated != int(rotated):
        fail(
            "position.rotary_fraction",
            f"head_dim x fraction = {c.head_dim} x {p.rotary_fraction} = {rotated:g} is not a whole number of dims",
        )
    if p.kind == "rope" and c.rotary_dim % 2:
        fail(
            "position.rotary_fraction",
            f"rotated width head_dim x fraction = {c.rotary_dim} must be even (RoPE rotates pairs)",
        )
    if p.kind == "rope" and c.rotary_dim == 0:
        fail("position.rotary_fraction", "rotates no dims at all; raise it or use kind = 'none'")
    if p.kind == "glm2d" and c.head_dim % 4:
        fail("attention.head_dim", f"glm2d rotates two halves of each head in pairs: head_dim ({c.head_dim}) must be a multiple of 4")
    s = p.scaling
    if s is not None:
        if p.kind != "rope":
            fail("position.scaling", f"only applies to kind = 'rope', not {p.kind!r}")
        positive("position.scaling", s, "factor", "original_max_seq_len", "beta_fast", "beta_slow")
        if s.kind in ("llama3", "yarn") and s.original_max_seq_len is None:
            fail("position.scaling.original_max_seq_len", f"required for kind = {s.kind!r}")
        if s.kind == "llama3" and s.high_freq_factor <= s.low_freq_factor:
            fail("position.scaling.high_freq_factor", "must be > low_freq_factor")
        if s.kind == "yarn" and s.beta_fast <= s.beta_slow:
            fail(
                "position.scaling.beta_fast",
                f"must be > beta_slow ({s.beta_slow:g}): the ramp runs from beta_slow to beta_fast rotations",
            )
        llama3 = ("original_max_seq_len", "low_freq_factor", "high_freq_factor")
        yarn = ("original_max_seq_len", "beta_fast", "beta_slow", "mscale", "mscale_all_dim")
        used = {"linear": (), "llama3": llama3, "yarn": yarn}[s.kind]
        scaling_defaults = type(s)(kind=s.kind, factor=s.factor)
        for key in dict.fromkeys(llama3 + yarn):
            if key not in used and getattr(s, key) != getattr(scaling_defaults, key):
                fail(f"position.scaling.{key}", f"does not apply to kind = {s.kind!r}; remove it")


def _check_moe(c: Config, fail, positive) -> None:
    e = c.moe
    positive("moe", e, "n_experts", "top_k", "expert_hidden", "shared_hidden", "n_groups", "topk_groups", "sparse_step", "routed_scaling_factor")
    if e.top_k > e.n_experts:
        fail("moe.top_k", f"must be <= n_experts ({e.n_experts}), got {e.top_k}")
    if e.n_shared_experts < 0:
        fail("moe.n_shared_experts", f"must be >= 0, got {e.n_shared_experts}")
    if e.shared_gate and e.n_shared_experts == 0:
        fail("moe.shared_gate", "needs n_shared_experts >= 1")
    if e.shared_hidden is not None and e.n_shared_experts == 0:
        fail("moe.shared_hidden", "needs n_shared_experts >= 1 (there is no shared expert to size)")
    if e.n_experts % e.n_groups:
        fail("moe.n_groups", f"must divide n_experts ({e.n_experts}), got {e.n_groups}")
    if e.topk_groups > e.n_groups:
        fail("moe.topk_groups", f"must be <= n_groups ({e.n_groups}), got {e.topk_groups}")
    per_group = e.n_experts // e.n_groups
    if e.top_k > e.topk_groups * per_group:
        fail("moe.top_k", f"the kept groups hold only {e.topk_groups * per_group} experts, fewer than top_k = {e.top_k}")
    if e.group_score == "top2_sum" and e.n_groups > 1 and per_group < 2:
        fail("moe.group_score", "top2_sum needs at least 2 experts per group")
    if e.correction_bias and e.scoring != "sigmoid":
        fail("moe.correction_bias", "is DeepSeek-V3's rule and needs scoring = 'sigmoid'")
    if not 0 <= e.first_dense_layers <= c.model.n_layers:
        fail("moe.first_dense_layers", f"must be in [0, n_layers={c.model.n_layers}]")
    bad = [i for i in e.dense_layers if not 0 <= i < c.model.n_layers]
    if bad:
        fail("moe.dense_layers", f"indices must be in [0, {c.model.n_layers}), got {bad}")
    if e.aux_loss_coef < 0 or e.bias_update_rate < 0:
        fail("moe.aux_loss_coef", "aux_loss_coef and bias_update_rate must be >= 0")
    if e.sparse_step > c.model.n_layers:
        fail("moe.sparse_step", f"must be <= n_layers ({c.model.n_layers}), got {e.sparse_step}")
    if not any(c.is_moe_layer(i) for i in range(c.model.n_layers)):
        fail(
            "moe",
            "applies to no layer (first_dense_layers, sparse_step and dense_layers leave every layer dense); "
            "remove [moe] or let it cover a layer",
        )
