"""``DeepseekV2ForCausalLM`` and ``DeepseekV3ForCausalLM``: MLA attention, MoE with shared experts.

Names: ``self_attn.kv_a_proj_with_mqa`` is our ``attn.kv_a_proj``; the router
``mlp.gate`` is our ``mlp.router`` (V3 adds the buffer
``mlp.gate.e_score_correction_bias``); checkpoints hold one key per expert and
projection, ``mlp.experts.{e}.gate_proj.weight``: ``down_proj`` is stacked into
``[E, d, hidden]``, ``gate_proj`` and ``up_proj`` are stacked and fused into our
``gate_up_proj`` ``[E, 2 hidden, d]`` on load, and split and unstacked on save.
``mlp.shared_experts`` keeps its name. The released V3 checkpoint also stores the multi-token-prediction
module as ``model.layers.{n_layers}``; it is not part of the model
(transformers ignores it too) and is dropped on load.

Routing as transformers implements it:
    V2: softmax scores, ``topk_method`` "greedy" (plain top-k) or
        "group_limited_greedy" (group score = max); ``norm_topk_prob`` is not
        applied (transformers' DeepseekV2 router ignores it), so it must be false.
    V3: sigmoid scores, correction bias, group score = top-2 sum, renormalised
        if ``norm_topk_prob``, times ``routed_scaling_factor``.
Both build the shared experts as one SwiGLU of width n_shared x
moe_intermediate_size; every layer from ``first_k_dense_replace`` on is MoE
(``moe_layer_freq`` is ignored by transformers and here).

RoPE: V2 rotates interleaved pairs (its complex form); V3 too unless
``rope_interleave`` is false.
"""

from __future__ import annotations

from ...config import Config
from .family import HFFamily, UnsupportedConfig, require, rope_from_hf, rope_to_hf, tokens_from_hf, tokens_to_hf
from .llama import decoder_rules
from .rules import Drop, Rename, StackExperts, StackFusedExperts

V2 = "DeepseekV2ForCausalLM"
V3 = "DeepseekV3ForCausalLM"
ABSENT = {
    V2: {"routed_scaling_factor": 1.0, "first_k_dense_replace": 0},
    V3: {"routed_scaling_factor": 2.5, "first_k_dense_replace": 3, "n_group": 8, "topk_group": 4},
}
"""Fields a config.json may leave out, at transformers' DeepseekV2Config / DeepseekV3Config defaults, so
that a folder means here what it means there (V3's are also the released DeepSeek-V3 values; V2's
release says routed_scaling_factor 16.0 and V2-Lite's 1.0 outright)."""


def _field(hf: dict, key: str, architecture: str):
    """``hf[key]``, or transformers' default when the key is absent (``null`` stays None)."""
    return hf[key] if key in hf else ABSENT[architecture][key]


def n_experts(cfg: Config) -> int:
    return cfg.moe.n_experts


def moe_rules(router: str = "gate", shared: str = "shared_experts") -> list:
    """Router, stacked experts and shared experts of a MoE layer (DeepSeek and Qwen-MoE checkpoints)."""
    expert = "model.layers.{i}.mlp.experts.{e}"
    return [
        StackFusedExperts(
            (f"{expert}.gate_proj.weight", f"{expert}.up_proj.weight"), "layers.{i}.mlp.experts.gate_up_proj", n_experts
        ),
        StackExperts(f"{expert}.down_proj.weight", "layers.{i}.mlp.experts.down_proj", n_experts),
        Rename(f"model.layers.{{i}}.mlp.{router}.{{p}}", "layers.{i}.mlp.router.{p}"),
        Rename(f"model.layers.{{i}}.mlp.{shared}.{{p}}", "layers.{i}.mlp.shared_experts.{p}"),
    ]


MTP_ONLY = ("enorm", "hnorm", "eh_proj")
"""Tensors only a multi-token-prediction layer has: a layer is dropped as MTP only if it holds them."""


def rules(cfg: Config) -> list:
    mtp = [
        Drop(
            f"model.layers.{n}.{{p}}",
            only_if_any=MTP_ONLY,
            otherwise=f"model.layers.{n} has none of the multi-token-prediction tensors ({', '.join(MTP_ONLY)}): it is "
            f"a decoder layer, so config.json's num_hidden_layers ({cfg.model.n_layers}) is too small",
        )
        for n in range(cfg.model.n_layers, cfg.model.n_layers + cfg.model.mtp_layers)
    ]
    return [
        *mtp,
        Rename("model.layers.{i}.self_attn.kv_a_proj_with_mqa.weight", "layers.{i}.attn.kv_a_proj.weight"),
        *moe_rules(),
        *decoder_rules(),
    ]


# ---- config.json -> archzoo ------------------------------------------------------


def _common_from_hf(hf: dict, name: str, architecture: str, layout: str) -> dict:
    if hf.get("attention_bias"):
        raise UnsupportedConfig(f"{architecture}: attention_bias = true is not implemented for MLA")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedConfig(f"{architecture}: hidden_act {hf['hidden_act']!r} (only silu)")
    n_shared = hf.get("n_shared_experts") or 0
    if n_shared < 1:
        raise UnsupportedConfig(f"{architecture}: n_shared_experts must be >= 1 (transformers always builds them)")
    return {
        "name": name,
        "family": "deepseek",
        "source": f"Hugging Face {architecture} checkpoint",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": hf["hidden_size"],
            "n_layers": hf["num_hidden_layers"],
            "max_seq_len": hf.get("max_position_embeddings", 4096),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        },
        "norm": {"kind": "rmsnorm", "eps": float(hf.get("rms_norm_eps", 1e-6)), "placement": "pre"},
        "attention": {
            "kind": "mla",
            "n_heads": hf["num_attention_heads"],
            "q_lora_rank": hf.get("q_lora_rank") or 0,
            "kv_lora_rank": hf["kv_lora_rank"],
            "qk_nope_head_dim": hf["qk_nope_head_dim"],
            "qk_rope_head_dim": hf["qk_rope_head_dim"],
            "v_head_dim": hf["v_head_dim"],
        },
        "position": rope_from_hf(hf, layout=layout),
        "mlp": {"kind": "swiglu", "hidden": hf["intermediate_size"]},
        "moe": {
            "n_experts": hf["n_routed_experts"],
            "top_k": hf["num_experts_per_tok"],
            "expert_hidden": hf["moe_intermediate_size"],
            "n_shared_experts": n_shared,
            "routed_scaling_factor": float(_field(hf, "routed_scaling_factor", architecture) or 1.0),
            "first_dense_layers": _field(hf, "first_k_dense_replace", architecture) or 0,
        },
        "tokens": tokens_from_hf(hf),
    }


def v2_from_hf(hf: dict, name: str) -> dict:
    if hf.get("scoring_func", "softmax") != "softmax":
        raise UnsupportedConfig(f"{V2}: scoring_func {hf['scoring_func']!r} (transformers' V2 router is softmax)")
    cfg = _common_from_hf(hf, name, V2, "interleaved")
    method = hf.get("topk_method", "greedy")
    if method == "group_limited_greedy":
        cfg["moe"].update(n_groups=hf["n_group"], topk_groups=hf["topk_group"], group_score="max")
    elif method != "greedy":
        raise UnsupportedConfig(f"{V2}: topk_method {method!r} (greedy and group_limited_greedy are supported)")
    cfg["moe"].update(scoring="softmax", aux_loss_coef=float(hf.get("aux_loss_alpha") or 0.0))
    return cfg


def v3_from_hf(hf: dict, name: str) -> dict:
    layout = "interleaved" if hf.get("rope_interleave", True) else "half"
    cfg = _common_from_hf(hf, name, V3, layout)
    for key in ("n_group", "topk_group"):
        if key in hf and hf[key] is None:  # transformers' V3 router computes with both: null fails there
            raise UnsupportedConfig(f"{V3}: {key} is null; give a number (n_group 1 = no group limit), or leave it out for {ABSENT[V3][key]}")
    n_groups = _field(hf, "n_group", V3)
    cfg["moe"].update(
        scoring="sigmoid",
        correction_bias=True,
        normalize_top_k=bool(hf.get("norm_topk_prob", True)),
        n_groups=n_groups,
        topk_groups=_field(hf, "topk_group", V3),
        group_score="top2_sum",
    )
    cfg["model"]["mtp_layers"] = hf.get("num_nextn_predict_layers", 0)
    return cfg


# ---- archzoo -> config.json ------------------------------------------------------


def _common_to_hf(cfg: Config, architecture: str, model_type: str) -> dict:
    a, m = cfg.attention, cfg.moe
    require(a.kind == "mla", architecture, "attention other than MLA")
    require(m is not None, architecture, "a model without MoE layers")
    require(cfg.norm.kind == "rmsnorm" and cfg.norm.placement == "pre" and not cfg.norm.residual_from_normed, architecture, "norms other than pre-RMSNorm")
    require(cfg.mlp.kind == "swiglu" and not cfg.mlp.bias, architecture, "a dense MLP other than SwiGLU without bias")
    require(cfg.position.rotary_fraction == 1.0, architecture, "partial rotary")
    require(not cfg.model.embedding_norm, architecture, "an embedding norm")
    require(
        m.n_shared_experts >= 1 and not m.shared_gate, architecture, "routed experts without ungated shared experts"
    )
    shared_width = m.n_shared_experts * m.expert_hidden
    require(m.shared_hidden in (None, shared_width), architecture, "a shared width other than n_shared x expert_hidden")
    require(m.sparse_step == 1 and not m.dense_layers, architecture, "dense layers other than the first k")
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": cfg.model.vocab_size,
        "hidden_size": cfg.model.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "moe_intermediate_size": m.expert_hidden,
        "num_hidden_layers": cfg.model.n_layers,
        "num_attention_heads": a.n_heads,
        "num_key_value_heads": a.n_heads,
        "n_shared_experts": m.n_shared_experts,
        "n_routed_experts": m.n_experts,
        "num_experts_per_tok": m.top_k,
        "routed_scaling_factor": m.routed_scaling_factor,
        "first_k_dense_replace": m.first_dense_layers,
        "q_lora_rank": a.q_lora_rank or None,
        "kv_lora_rank": a.kv_lora_rank,
        "qk_nope_head_dim": a.qk_nope_head_dim,
        "qk_rope_head_dim": a.qk_rope_head_dim,
        "v_head_dim": a.v_head_dim,
        "hidden_act": "silu",
        "attention_bias": False,
        "max_position_embeddings": cfg.model.max_seq_len,
        "rms_norm_eps": cfg.norm.eps,
        "tie_word_embeddings": cfg.model.tie_embeddings,
        "rope_parameters": rope_to_hf(cfg),
        **tokens_to_hf(cfg),
    }


def v2_to_hf(cfg: Config) -> dict:
    out = _common_to_hf(cfg, V2, "deepseek_v2")
    m = cfg.moe
    require(m.scoring == "softmax" and not m.correction_bias, V2, "routing other than softmax without bias")
    require(not m.normalize_top_k, V2, "renormalised top-k weights (its router does not renormalise)")
    require(cfg.position.layout == "interleaved", V2, "half-layout RoPE")
    grouped = m.n_groups > 1 and m.topk_groups < m.n_groups
    require(not grouped or m.group_score == "max", V2, "a group score other than max")
    out.update(
        topk_method="group_limited_greedy" if grouped else "greedy",
        n_group=m.n_groups if grouped else None,
        topk_group=m.topk_groups if grouped else None,
        norm_topk_prob=False,
        scoring_func="softmax",
        aux_loss_alpha=m.aux_loss_coef,
    )
    return out


def v3_to_hf(cfg: Config) -> dict:
    out = _common_to_hf(cfg, V3, "deepseek_v3")
    m = cfg.moe
    require(m.scoring == "sigmoid" and m.correction_bias, V3, "routing other than sigmoid with correction bias")
    require(m.n_groups == 1 or m.group_score == "top2_sum", V3, "a group score other than the top-2 sum")
    out.update(
        n_group=m.n_groups,
        topk_group=m.topk_groups,
        norm_topk_prob=m.normalize_top_k,
        rope_interleave=cfg.position.layout == "interleaved",
        num_nextn_predict_layers=cfg.model.mtp_layers,
    )
    return out


V2_FAMILY = HFFamily(V2, v2_from_hf, v2_to_hf, rules)
V3_FAMILY = HFFamily(V3, v3_from_hf, v3_to_hf, rules)
