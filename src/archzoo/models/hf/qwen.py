"""``Qwen2ForCausalLM`` (Qwen1.5, Qwen2, Qwen2.5) and ``Qwen3ForCausalLM``.

Qwen2: LLaMA-like with bias on q, k, v only (not on o). Qwen3: no q/k/v bias
by default, per-head RMSNorm on q and k (``q_norm``, ``k_norm``), and a
head_dim that need not equal hidden_size / heads.
"""

from __future__ import annotations

from ...config import Config
from .family import HFFamily, no_sliding_window, require
from .llama import decoder_rules, llama_like_config, llama_like_to_hf

QWEN2 = "Qwen2ForCausalLM"
QWEN3 = "Qwen3ForCausalLM"


def qwen2_from_hf(hf: dict, name: str) -> dict:
    no_sliding_window(hf, QWEN2)
    cfg = llama_like_config(hf, name, "qwen", QWEN2)
    cfg["attention"]["qkv_bias"] = True
    return cfg


def qwen2_to_hf(cfg: Config) -> dict:
    a = cfg.attention
    require(a.qkv_bias and not a.o_bias, QWEN2, "attention biases other than q/k/v-only")
    require(not a.qk_norm, QWEN2, "q/k norms")
    require(not cfg.mlp.bias, QWEN2, "MLP biases")
    require(cfg.position.rotary_fraction == 1.0, QWEN2, "partial rotary")
    return llama_like_to_hf(cfg, QWEN2, "qwen2")


def qwen3_from_hf(hf: dict, name: str) -> dict:
    no_sliding_window(hf, QWEN3)
    cfg = llama_like_config(hf, name, "qwen", QWEN3)
    cfg["attention"]["qk_norm"] = True
    if hf.get("attention_bias"):
        cfg["attention"].update(qkv_bias=True, o_bias=True)
    return cfg


def qwen3_to_hf(cfg: Config) -> dict:
    a = cfg.attention
    require(a.qk_norm, QWEN3, "attention without q/k norms")
    require(a.qkv_bias == a.o_bias, QWEN3, "bias on q/k/v without bias on o (or the reverse)")
    require(not cfg.mlp.bias, QWEN3, "MLP biases")
    require(cfg.position.rotary_fraction == 1.0, QWEN3, "partial rotary")
    out = llama_like_to_hf(cfg, QWEN3, "qwen3")
    out["attention_bias"] = a.qkv_bias
    return out


QWEN2_FAMILY = HFFamily(QWEN2, qwen2_from_hf, qwen2_to_hf, lambda cfg: decoder_rules())
QWEN3_FAMILY = HFFamily(QWEN3, qwen3_from_hf, qwen3_to_hf, lambda cfg: decoder_rules())
