"""``LlamaForCausalLM`` (LLaMA 1/2/3, Yi, and any pre-RMSNorm RoPE gated-MLP decoder).

Weights are unfused and named almost as ours; HF-format checkpoints already
use the ``half`` RoPE layout (the conversion script permuted Meta's q/k rows).
"""

from __future__ import annotations

from ...config import Config
from .family import (
    HFFamily,
    gated_mlp_from_hf,
    gated_mlp_to_hf,
    require,
    rope_from_hf,
    rope_to_hf,
    tokens_from_hf,
    tokens_to_hf,
)
from .rules import Drop, Rename

ARCHITECTURE = "LlamaForCausalLM"


def decoder_rules(prefix: str = "model.") -> list:
    """The renames shared by LLaMA-like checkpoints (Qwen2/3, GLM, DeepSeek, Qwen-MoE start from these)."""
    return [
        Rename(f"{prefix}embed_tokens.weight", "embed.weight"),
        Rename(f"{prefix}layers.{{i}}.input_layernorm.{{p}}", "layers.{i}.attn_norm.{p}"),
        Drop(f"{prefix}layers.{{i}}.self_attn.rotary_emb.inv_freq"),
        Rename(f"{prefix}layers.{{i}}.self_attn.{{p}}", "layers.{i}.attn.{p}"),
        Rename(f"{prefix}layers.{{i}}.post_attention_layernorm.{{p}}", "layers.{i}.mlp_norm.{p}"),
        Rename(f"{prefix}layers.{{i}}.mlp.{{p}}", "layers.{i}.mlp.{p}"),
        Rename(f"{prefix}norm.{{p}}", "final_norm.{p}"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def llama_like_config(hf: dict, name: str, family: str, architecture: str) -> dict:
    """The fields every LLaMA-like config.json shares, as an archzoo dict."""
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    attention = {"n_heads": n_heads, "n_kv_heads": hf.get("num_key_value_heads") or n_heads}
    head_dim = hf.get("head_dim")
    if head_dim and head_dim * n_heads != d_model:
        attention["head_dim"] = head_dim
    return {
        "name": name,
        "family": family,
        "source": f"Hugging Face {architecture} checkpoint",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": d_model,
            "n_layers": hf["num_hidden_layers"],
            "max_seq_len": hf.get("max_position_embeddings", 2048),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        },
        "norm": {"kind": "rmsnorm", "eps": float(hf.get("rms_norm_eps", 1e-6)), "placement": "pre"},
        "attention": attention,
        "position": rope_from_hf(hf),
        "mlp": gated_mlp_from_hf(hf, architecture),
        "tokens": tokens_from_hf(hf),
    }


def llama_like_to_hf(cfg: Config, architecture: str, model_type: str) -> dict:
    """config.json fields shared by LLaMA-like architectures; checks what all of them require."""
    require(cfg.attention.kind == "mha", architecture, "multi-head latent attention")
    require(cfg.moe is None, architecture, "mixture-of-experts layers")
    require(cfg.norm.kind == "rmsnorm" and cfg.norm.placement == "pre" and not cfg.norm.residual_from_normed, architecture, "norms other than pre-RMSNorm")
    require(cfg.position.kind == "rope" and cfg.position.layout == "half", architecture, "positions other than half-layout RoPE")
    require(not cfg.model.embedding_norm, architecture, "an embedding norm")
    return {
        "architectures": [architecture],
        "model_type": model_type,
        "vocab_size": cfg.model.vocab_size,
        "hidden_size": cfg.model.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.model.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": gated_mlp_to_hf(cfg, architecture),
        "max_position_embeddings": cfg.model.max_seq_len,
        "rms_norm_eps": cfg.norm.eps,
        "tie_word_embeddings": cfg.model.tie_embeddings,
        "rope_parameters": rope_to_hf(cfg),
        **tokens_to_hf(cfg),
    }


def config_from_hf(hf: dict, name: str) -> dict:
    cfg = llama_like_config(hf, name, "llama", ARCHITECTURE)
    if hf.get("attention_bias"):
        cfg["attention"].update(qkv_bias=True, o_bias=True)
    return cfg


def config_to_hf(cfg: Config) -> dict:
    a = cfg.attention
    require(a.qkv_bias == a.o_bias, ARCHITECTURE, "bias on q/k/v without bias on o (or the reverse)")
    require(not a.qk_norm, ARCHITECTURE, "q/k norms")
    require(cfg.position.rotary_fraction == 1.0, ARCHITECTURE, "partial rotary")
    out = llama_like_to_hf(cfg, ARCHITECTURE, "llama")
    out.update(attention_bias=a.qkv_bias, mlp_bias=cfg.mlp.bias)
    return out


FAMILY = HFFamily(ARCHITECTURE, config_from_hf, config_to_hf, lambda cfg: decoder_rules())
