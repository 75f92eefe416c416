"""``DeepseekForCausalLM``: DeepSeekMoE (Dai et al., 2024; deepseek-moe-16b), remote code.

LLaMA's attention and names (MHA, RoPE in the half layout, no biases) with the
DeepSeek MoE layer of ``deepseek.py``: from ``first_k_dense_replace`` on, every
layer (``moe_layer_freq`` = 1) routes each token to ``num_experts_per_tok`` of
``n_routed_experts`` SwiGLU experts by softmax scores (renormalised only with
``norm_topk_prob``) and adds the ungated shared experts, one SwiGLU of width
``n_shared_experts x moe_intermediate_size``. Keys: ``mlp.gate.weight`` (the
router), ``mlp.experts.{e}.{gate,up,down}_proj``, ``mlp.shared_experts.*``.
"""

from __future__ import annotations

from ...config import Config
from .deepseek import moe_rules
from .family import HFFamily, UnsupportedConfig, require, rope_from_hf, rope_to_hf, tokens_from_hf, tokens_to_hf
from .llama import decoder_rules

ARCHITECTURE = "DeepseekForCausalLM"
AUTO_MAP = {"AutoConfig": "configuration_deepseek.DeepseekConfig", "AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM"}


def config_from_hf(hf: dict, name: str) -> dict:
    for key, wanted in (("moe_layer_freq", 1), ("scoring_func", "softmax"), ("hidden_act", "silu"), ("attention_bias", False)):
        if hf.get(key, wanted) != wanted:
            raise UnsupportedConfig(f"{ARCHITECTURE}: {key} = {hf[key]!r} is not implemented (only {wanted!r})")
    n_heads = hf["num_attention_heads"]
    attention = {"n_heads": n_heads}
    if (hf.get("num_key_value_heads") or n_heads) != n_heads:
        attention["n_kv_heads"] = hf["num_key_value_heads"]
    return {
        "name": name,
        "family": "deepseek",
        "source": f"DeepSeekMoE remote-code checkpoint ({ARCHITECTURE})",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": hf["hidden_size"],
            "n_layers": hf["num_hidden_layers"],
            "max_seq_len": hf.get("max_position_embeddings", 4096),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        },
        "norm": {"kind": "rmsnorm", "eps": float(hf.get("rms_norm_eps", 1e-6)), "placement": "pre"},
        "attention": attention,
        "position": rope_from_hf(hf),
        "mlp": {"kind": "swiglu", "hidden": hf["intermediate_size"]},
        "moe": {
            "n_experts": hf["n_routed_experts"],
            "top_k": hf["num_experts_per_tok"],
            "expert_hidden": hf["moe_intermediate_size"],
            "n_shared_experts": hf.get("n_shared_experts") or 0,
            "scoring": "softmax",
            "normalize_top_k": bool(hf.get("norm_topk_prob", False)),
            "first_dense_layers": hf.get("first_k_dense_replace") or 0,
            "aux_loss_coef": float(hf.get("aux_loss_alpha") or 0.0),
        },
        "tokens": tokens_from_hf(hf),
    }


def config_to_hf(cfg: Config) -> dict:
    a, m = cfg.attention, cfg.moe
    require(a.kind == "mha" and m is not None, ARCHITECTURE, "latent attention, or a model without MoE layers")
    require(not (a.qkv_bias or a.o_bias or a.qk_norm or cfg.mlp.bias) and a.softmax_scale is None, ARCHITECTURE,
            "biases, q/k norms or a softmax scale")  # fmt: skip
    require(cfg.head_dim * cfg.n_heads == cfg.model.d_model, ARCHITECTURE, "head_dim != d_model / n_heads")
    require(cfg.norm.kind == "rmsnorm" and cfg.norm.placement == "pre" and not cfg.model.embedding_norm, ARCHITECTURE,
            "norms other than pre-RMSNorm")  # fmt: skip
    p = cfg.position
    require(p.kind == "rope" and p.layout == "half" and p.rotary_fraction == 1.0, ARCHITECTURE, "positions other than half-layout RoPE")
    require(cfg.mlp.kind == "swiglu", ARCHITECTURE, f"mlp kind {cfg.mlp.kind!r}")
    require(m.scoring == "softmax" and not m.correction_bias and m.n_groups == 1 and m.routed_scaling_factor == 1.0,
            ARCHITECTURE, "routing other than plain softmax top-k")  # fmt: skip
    require(not m.shared_gate and m.shared_hidden in (None, m.n_shared_experts * m.expert_hidden), ARCHITECTURE,
            "shared experts other than ungated, n_shared x expert_hidden wide")  # fmt: skip
    require(m.sparse_step == 1 and not m.dense_layers, ARCHITECTURE, "dense layers other than the first k")
    rope = rope_to_hf(cfg)
    return {
        "architectures": [ARCHITECTURE],
        "auto_map": AUTO_MAP,
        "model_type": "deepseek",
        "vocab_size": cfg.model.vocab_size,
        "hidden_size": cfg.model.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "moe_intermediate_size": m.expert_hidden,
        "num_hidden_layers": cfg.model.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "n_routed_experts": m.n_experts,
        "n_shared_experts": m.n_shared_experts or None,
        "num_experts_per_tok": m.top_k,
        "norm_topk_prob": m.normalize_top_k,
        "scoring_func": "softmax",
        "first_k_dense_replace": m.first_dense_layers,
        "moe_layer_freq": 1,
        "aux_loss_alpha": m.aux_loss_coef,
        "hidden_act": "silu",
        "attention_bias": False,
        "max_position_embeddings": cfg.model.max_seq_len,
        "rms_norm_eps": cfg.norm.eps,
        "rope_theta": rope["rope_theta"],
        "rope_scaling": None if p.scaling is None else {k: v for k, v in rope.items() if k != "rope_theta"},
        "tie_word_embeddings": cfg.model.tie_embeddings,
        **tokens_to_hf(cfg),
    }


def rules(cfg: Config) -> list:
    return [*moe_rules(), *decoder_rules()]


FAMILY = HFFamily(ARCHITECTURE, config_from_hf, config_to_hf, rules)
