"""``GlmForCausalLM`` (transformers ``glm``: GLM-4-9B), and the fused gated-MLP
split shared by every GLM-family checkpoint.

transformers' ``glm`` is the ChatGLM2 layer with LLaMA names: pre-RMSNorm,
q/k/v with bias, o without, partial RoPE (``partial_rotary_factor``, 0.5) in
interleaved pairs (2i, 2i+1), and a fused ``mlp.gate_up_proj`` (h -> 2f).

Fused gated MLPs: a checkpoint stores [first half | second half] as one
h -> 2f matrix; archzoo keeps ``gate_proj`` and ``up_proj`` apart.

    gate_first   act(first) * second    ChatGLM2 dense_h_to_4h, GLM-4, HF glm
    value_first  first * act(second)    GLM-130B GeGLU

``[mlp] gated_half_order`` says which; ``split_gated`` / ``fuse_gated`` apply it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...config import Config
from .family import HFFamily, require, rope_from_hf, rope_to_hf, tokens_to_hf
from .llama import decoder_rules, llama_like_config
from .rules import SplitFused

ARCHITECTURE = "GlmForCausalLM"
PARTIAL_ROTARY_DEFAULT = 0.5  # transformers' GlmConfig, when config.json gives no partial_rotary_factor
EPS_DEFAULT = 1.5625e-07  # transformers' GlmConfig rms_norm_eps, when config.json gives none


def split_gated(fused: torch.Tensor, cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """A fused [2f, ...] weight or bias -> (gate, up), by ``cfg.mlp.gated_half_order``."""
    hidden = cfg.mlp_hidden
    if fused.shape[0] != 2 * hidden:
        raise ValueError(f"fused gated MLP tensor has {fused.shape[0]} rows, expected 2 x mlp hidden = {2 * hidden}")
    first, second = fused[:hidden], fused[hidden:]
    if cfg.mlp.gated_half_order == "gate_first":
        return first, second
    return second, first


def fuse_gated(parts: Sequence[torch.Tensor], cfg: Config) -> torch.Tensor:
    """(gate, up) -> the fused [2f, ...] tensor; inverse of ``split_gated``."""
    gate, up = parts
    halves = (gate, up) if cfg.mlp.gated_half_order == "gate_first" else (up, gate)
    return torch.cat(halves, dim=0)


def fused_gated_rule(hf_pattern: str, ours_prefix: str) -> SplitFused:
    """``hf_pattern`` (with ``{i}`` and ``{p}``) <-> ``{ours_prefix}.gate_proj.{p}`` / ``.up_proj.{p}``."""
    return SplitFused(hf_pattern, (f"{ours_prefix}.gate_proj.{{p}}", f"{ours_prefix}.up_proj.{{p}}"), split_gated, fuse_gated)


def config_from_hf(hf: dict, name: str) -> dict:
    cfg = llama_like_config(hf, name, "glm", ARCHITECTURE)
    cfg["position"] = rope_from_hf(hf, layout="interleaved")
    if "partial_rotary_factor" not in (hf.get("rope_parameters") or {}) and "partial_rotary_factor" not in hf:
        cfg["position"]["rotary_fraction"] = PARTIAL_ROTARY_DEFAULT  # rope_from_hf's default is the whole head
    if hf.get("attention_bias", True):
        cfg["attention"]["qkv_bias"] = True
    cfg["mlp"]["gated_half_order"] = "gate_first"
    if "rms_norm_eps" not in hf:
        cfg["norm"]["eps"] = EPS_DEFAULT  # llama_like_config's default is LLaMA's
    return cfg


def config_to_hf(cfg: Config) -> dict:
    a, p, m = cfg.attention, cfg.position, cfg.model
    require(a.kind == "mha" and cfg.moe is None, ARCHITECTURE, "latent attention or mixture-of-experts layers")
    require(not a.o_bias and not a.qk_norm, ARCHITECTURE, "a bias on o_proj, or q/k norms")
    require(cfg.norm.kind == "rmsnorm" and cfg.norm.placement == "pre" and not cfg.norm.residual_from_normed, ARCHITECTURE, "norms other than pre-RMSNorm")
    require(not m.embedding_norm, ARCHITECTURE, "an embedding norm")
    require(cfg.mlp.kind == "swiglu" and not cfg.mlp.bias, ARCHITECTURE, "MLPs other than bias-free SwiGLU")
    require(cfg.mlp.gated_half_order == "gate_first", ARCHITECTURE, "a value-first fused MLP")
    require(p.kind == "rope" and p.layout == "interleaved", ARCHITECTURE, "positions other than interleaved RoPE")
    require(p.scaling is None, ARCHITECTURE, "RoPE scaling")
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "glm",
        "vocab_size": m.vocab_size,
        "hidden_size": m.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "attention_bias": a.qkv_bias,
        "max_position_embeddings": m.max_seq_len,
        "rms_norm_eps": cfg.norm.eps,
        "tie_word_embeddings": m.tie_embeddings,
        "rope_parameters": {**rope_to_hf(cfg), "partial_rotary_factor": p.rotary_fraction},
        **tokens_to_hf(cfg),
    }


def rules(cfg: Config) -> list:
    return [fused_gated_rule("model.layers.{i}.mlp.gate_up_proj.{p}", "layers.{i}.mlp"), *decoder_rules()]


FAMILY = HFFamily(ARCHITECTURE, config_from_hf, config_to_hf, rules)
