"""``Qwen2MoeForCausalLM`` (Qwen1.5-MoE, Qwen2-MoE) and ``Qwen3MoeForCausalLM``.

Attention as in Qwen2 (q/k/v biases, ``qkv_bias`` default true) or Qwen3
(per-head q/k RMSNorm, explicit head_dim). Routing: softmax top-k,
renormalised when ``norm_topk_prob``. Qwen2-MoE adds one shared expert of
width ``shared_expert_intermediate_size`` scaled by sigmoid(``shared_expert_gate``).
Layer i is MoE when (i + 1) % ``decoder_sparse_step`` == 0 and i is not in
``mlp_only_layers``; other layers use a dense SwiGLU of ``intermediate_size``.

Names: ``mlp.gate`` is our ``mlp.router``, ``mlp.shared_expert`` our
``mlp.shared_experts``, ``mlp.shared_expert_gate`` our ``mlp.shared_gate``;
one key per expert, stacked on load and unstacked on save.
"""

from __future__ import annotations

from ...config import Config
from .deepseek import moe_rules
from .family import HFFamily, UnsupportedConfig, no_sliding_window, require
from .llama import decoder_rules, llama_like_config, llama_like_to_hf
from .rules import Rename

QWEN2_MOE = "Qwen2MoeForCausalLM"
QWEN3_MOE = "Qwen3MoeForCausalLM"


def rules(cfg: Config) -> list:
    return [
        Rename("model.layers.{i}.mlp.shared_expert_gate.weight", "layers.{i}.mlp.shared_gate.weight"),
        *moe_rules(router="gate", shared="shared_expert"),
        *decoder_rules(),
    ]


def _moe_from_hf(hf: dict, name: str, architecture: str) -> dict:
    no_sliding_window(hf, architecture)
    n_experts = hf.get("num_experts") or hf.get("num_local_experts")  # transformers 5 writes the latter
    if not n_experts:
        raise UnsupportedConfig(f"{architecture}: num_experts = 0 (a dense model; use the dense Qwen architecture)")
    cfg = llama_like_config(hf, name, "qwen-moe", architecture)
    cfg["moe"] = {
        "n_experts": n_experts,
        "top_k": hf["num_experts_per_tok"],
        "expert_hidden": hf["moe_intermediate_size"],
        "scoring": "softmax",
        "normalize_top_k": bool(hf.get("norm_topk_prob", False)),
        "sparse_step": hf.get("decoder_sparse_step", 1),
        "dense_layers": list(hf.get("mlp_only_layers") or []),
        "aux_loss_coef": float(hf.get("router_aux_loss_coef", 0.0)),
    }
    return cfg


def qwen2_moe_from_hf(hf: dict, name: str) -> dict:
    cfg = _moe_from_hf(hf, name, QWEN2_MOE)
    cfg["attention"]["qkv_bias"] = bool(hf.get("qkv_bias", True))
    shared = hf.get("shared_expert_intermediate_size") or 0
    if not shared:
        raise UnsupportedConfig(f"{QWEN2_MOE}: shared_expert_intermediate_size = 0 (a zero-width shared expert)")
    cfg["moe"].update(n_shared_experts=1, shared_hidden=shared, shared_gate=True)
    return cfg


def qwen3_moe_from_hf(hf: dict, name: str) -> dict:
    cfg = _moe_from_hf(hf, name, QWEN3_MOE)
    cfg["attention"]["qk_norm"] = True
    if hf.get("attention_bias"):
        cfg["attention"].update(qkv_bias=True, o_bias=True)
    return cfg


def _moe_to_hf(cfg: Config, architecture: str, model_type: str) -> dict:
    m = cfg.moe
    require(m is not None, architecture, "a model without MoE layers")
    require(m.scoring == "softmax" and not m.correction_bias, architecture, "routing other than softmax top-k")
    require(m.n_groups == 1 or m.topk_groups == m.n_groups, architecture, "group-limited routing")
    require(m.routed_scaling_factor == 1.0, architecture, "a routed_scaling_factor")
    require(m.first_dense_layers == 0, architecture, "first_dense_layers (use dense_layers)")
    require(not cfg.mlp.bias and cfg.position.rotary_fraction == 1.0, architecture, "MLP biases or partial rotary")
    # llama_like_to_hf refuses MoE; check the rest with the MoE section set aside
    out = llama_like_to_hf(cfg.replace(moe=None), architecture, model_type)
    out.update(
        num_experts=m.n_experts,
        num_experts_per_tok=m.top_k,
        moe_intermediate_size=m.expert_hidden,
        norm_topk_prob=m.normalize_top_k,
        decoder_sparse_step=m.sparse_step,
        mlp_only_layers=list(m.dense_layers),
        router_aux_loss_coef=m.aux_loss_coef,
        use_sliding_window=False,
    )
    return out


def qwen2_moe_to_hf(cfg: Config) -> dict:
    out = _moe_to_hf(cfg, QWEN2_MOE, "qwen2_moe")
    a, m = cfg.attention, cfg.moe
    require(not a.qk_norm and not a.o_bias, QWEN2_MOE, "q/k norms or an output bias")
    require(m.n_shared_experts == 1 and m.shared_gate, QWEN2_MOE, "anything but one gated shared expert")
    out.update(qkv_bias=a.qkv_bias, shared_expert_intermediate_size=m.shared_hidden or m.expert_hidden)
    return out


def qwen3_moe_to_hf(cfg: Config) -> dict:
    out = _moe_to_hf(cfg, QWEN3_MOE, "qwen3_moe")
    a = cfg.attention
    require(a.qk_norm, QWEN3_MOE, "attention without q/k norms")
    require(a.qkv_bias == a.o_bias, QWEN3_MOE, "bias on q/k/v without bias on o (or the reverse)")
    require(cfg.moe.n_shared_experts == 0, QWEN3_MOE, "shared experts")
    out["attention_bias"] = a.qkv_bias
    return out


QWEN2_MOE_FAMILY = HFFamily(QWEN2_MOE, qwen2_moe_from_hf, qwen2_moe_to_hf, rules)
QWEN3_MOE_FAMILY = HFFamily(QWEN3_MOE, qwen3_moe_from_hf, qwen3_moe_to_hf, rules)
