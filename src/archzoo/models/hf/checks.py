"""config.json fields checked before any family table reads them.

A Hugging Face field name means the same thing in every architecture
(``hidden_size`` is a width wherever it appears), so one table of field types
serves all families: a field that is present must have its type and range, or
loading stops with a ``CheckpointError`` naming the file and the field. Absent
fields are the family table's business (it has the defaults transformers uses).
``null`` is accepted where transformers accepts it (optional fields).

Aliases that two spellings of one field may both carry (BLOOM's ``n_head`` and
``num_attention_heads``) must agree: each reader would pick a different one.
"""

from __future__ import annotations

import math
from pathlib import Path

from ...errors import CheckpointError

POSITIVE_INTS = (
    "vocab_size", "hidden_size", "n_embed", "intermediate_size", "ffn_hidden_size", "inner_hidden_size",
    "num_hidden_layers", "n_layer", "num_layers", "num_attention_heads", "n_head", "num_key_value_heads",
    "multi_query_group_num", "head_dim", "kv_channels", "max_position_embeddings", "seq_length",
    "max_sequence_length", "padded_vocab_size", "moe_intermediate_size", "shared_expert_intermediate_size",
    "n_routed_experts", "num_experts", "num_local_experts", "num_experts_per_tok", "kv_lora_rank", "q_lora_rank",
    "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_group", "topk_group", "decoder_sparse_step",
)
NON_NEGATIVE_INTS = ("first_k_dense_replace", "num_nextn_predict_layers", "n_shared_experts", "pre_seq_len")
POSITIVE_FLOATS = (
    "rms_norm_eps", "layer_norm_epsilon", "layernorm_epsilon", "rope_theta", "routed_scaling_factor",
    "partial_rotary_factor", "rope_ratio",
)
NON_NEGATIVE_FLOATS = ("aux_loss_alpha", "router_aux_loss_coef")
BOOLS = (
    "tie_word_embeddings", "attention_bias", "qkv_bias", "add_qkv_bias", "add_bias_linear", "mlp_bias",
    "apply_residual_connection_post_layernorm", "norm_topk_prob", "rope_interleave", "multi_query_attention",
    "post_layer_norm", "rmsnorm", "original_rope", "use_sliding_window", "norm_head",
)
ALIASES = (
    ("hidden_size", "n_embed"),
    ("num_attention_heads", "n_head"),
    ("num_hidden_layers", "n_layer"),
    ("num_hidden_layers", "num_layers"),
)
MAX_INT = 2**40  # no released size comes near; larger values are corruption (and would overflow torch's int64 maths)


def check_fields(hf: dict, path: Path) -> None:
    """Raise CheckpointError naming ``path`` and the field for a present field of the wrong type or range."""
    if not isinstance(hf.get("architectures"), list) or not all(isinstance(a, str) for a in hf["architectures"]):
        raise CheckpointError(f'{path}: "architectures" must be a list of class names, e.g. ["LlamaForCausalLM"]')
    for key in POSITIVE_INTS:
        _int(hf, key, path, minimum=1)
    for key in NON_NEGATIVE_INTS:
        _int(hf, key, path, minimum=0)
    for key in POSITIVE_FLOATS:
        _float(hf, key, path, positive=True)
    for key in NON_NEGATIVE_FLOATS:
        _float(hf, key, path, positive=False)
    for key in BOOLS:
        if hf.get(key) is not None and not isinstance(hf[key], bool):
            raise CheckpointError(f"{path}: {key} must be true or false, got {hf[key]!r}")
    for a, b in ALIASES:
        if hf.get(a) is not None and hf.get(b) is not None and hf[a] != hf[b]:
            raise CheckpointError(f"{path}: {a} = {hf[a]} and {b} = {hf[b]} name the same size and disagree; keep one")
    for key in ("rope_scaling", "rope_parameters"):
        if hf.get(key) is not None and not isinstance(hf[key], dict):
            raise CheckpointError(f"{path}: {key} must be an object or null, got {hf[key]!r}")
        for inner in ("factor", "rope_theta", "low_freq_factor", "high_freq_factor", "beta_fast", "beta_slow"):
            _float(hf.get(key) or {}, inner, path, positive=True, prefix=f"{key}.")


def _int(hf: dict, key: str, path: Path, minimum: int) -> None:
    value = hf.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise CheckpointError(f"{path}: {key} must be an integer, got {value!r}")
    if not minimum <= value <= MAX_INT:
        raise CheckpointError(f"{path}: {key} = {value} is out of range (must be {minimum} to {MAX_INT})")


def _float(hf: dict, key: str, path: Path, positive: bool, prefix: str = "") -> None:
    value = hf.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CheckpointError(f"{path}: {prefix}{key} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        rule = "a finite number > 0" if positive else "a finite number >= 0"
        raise CheckpointError(f"{path}: {prefix}{key} = {value} must be {rule}")
