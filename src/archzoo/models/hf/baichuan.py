"""Baichuan's remote-code checkpoints: ``BaiChuanForCausalLM`` (Baichuan-7B) and
``BaichuanForCausalLM`` (Baichuan-13B, Baichuan 2 7B / 13B).

The layer is LLaMA's (pre-RMSNorm, MHA, SwiGLU, no biases, untied head) with
q, k and v fused into one ``self_attn.W_pack`` of rows [Q | K | V]. What
config.json does not say, the ``modeling_baichuan.py`` shipped with each
checkpoint decides, and this map follows it (as vLLM does):

    positions   RoPE (half layout, base 10000) for Baichuan-7B and Baichuan 2 7B
                (hidden_size 4096); ALiBi for the 13B models
    NormHead    Baichuan 2 (its 125,696-token vocabulary): logits = h . normalize(W)^T

Folders archzoo writes say both outright, in vLLM's spelling
(``"position_embedding": "ROPE" | "ALIBI"``) and ``"norm_head": true | false``;
the remote code ignores keys it does not know, and those keys win on load.
They also carry the released ``auto_map``, so the original ``modeling_baichuan.py``
and ``configuration_baichuan.py`` copied into the folder load it with
``trust_remote_code=True``.
"""

from __future__ import annotations

from ...config import Config
from .family import HFFamily, UnsupportedConfig, gated_mlp_from_hf, require, tokens_from_hf, tokens_to_hf
from .llama import decoder_rules
from .rules import Rename, fused_qkv_rule

BAICHUAN_7B = "BaiChuanForCausalLM"
BAICHUAN = "BaichuanForCausalLM"
BAICHUAN2_VOCAB = 125696
ROPE_WIDTH = 4096  # the released RoPE models (Baichuan-7B, Baichuan 2 7B) are the 4096-wide ones
AUTO_MAP = {  # what the released config.json names, so trust_remote_code finds the modeling files
    BAICHUAN_7B: {"AutoConfig": "configuration_baichuan.BaiChuanConfig", "AutoModelForCausalLM": "modeling_baichuan.BaiChuanForCausalLM"},
    BAICHUAN: {"AutoConfig": "configuration_baichuan.BaichuanConfig", "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"},
}


def uses_rope(hf: dict, architecture: str) -> bool:
    explicit = hf.get("position_embedding")
    if explicit is not None:
        if explicit not in ("ROPE", "ALIBI"):
            raise UnsupportedConfig(f"{architecture}: position_embedding {explicit!r} (ROPE or ALIBI)")
        return explicit == "ROPE"
    return architecture == BAICHUAN_7B or hf["hidden_size"] == ROPE_WIDTH


def config_from_hf(hf: dict, name: str, architecture: str) -> dict:
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    rope = uses_rope(hf, architecture)
    context = hf.get("model_max_length") or hf.get("max_position_embeddings") or 4096
    norm_head = hf.get("norm_head", hf["vocab_size"] == BAICHUAN2_VOCAB)
    return {
        "name": name,
        "family": "baichuan",
        "source": f"Baichuan remote-code checkpoint ({architecture})",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": d_model,
            "n_layers": hf["num_hidden_layers"],
            "max_seq_len": context,
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
            "norm_head": bool(norm_head),
        },
        "norm": {"kind": "rmsnorm", "eps": float(hf.get("rms_norm_eps", 1e-6)), "placement": "pre"},
        "attention": {"n_heads": n_heads},
        "position": {"kind": "rope", "theta": 10000.0, "layout": "half"} if rope else {"kind": "alibi"},
        "mlp": gated_mlp_from_hf(hf, architecture),
        "tokens": tokens_from_hf(hf),
    }


def config_to_hf(cfg: Config, architecture: str) -> dict:
    a, p, m = cfg.attention, cfg.position, cfg.model
    require(a.kind == "mha" and cfg.moe is None and cfg.n_kv_heads == cfg.n_heads, architecture, "attention other than MHA")
    require(not (a.qkv_bias or a.o_bias or a.qk_norm or cfg.mlp.bias), architecture, "biases or q/k norms")
    require(cfg.head_dim * cfg.n_heads == m.d_model and a.softmax_scale is None, architecture, "a free head_dim or softmax scale")
    require(cfg.norm.kind == "rmsnorm" and cfg.norm.placement == "pre" and not cfg.norm.residual_from_normed and not m.embedding_norm, architecture,
            "norms other than pre-RMSNorm")  # fmt: skip
    require(cfg.mlp.kind == "swiglu", architecture, f"mlp kind {cfg.mlp.kind!r}")
    rope = p.kind == "rope"
    if rope:
        require(p.theta == 10000.0 and p.layout == "half" and p.rotary_fraction == 1.0 and p.scaling is None,
                architecture, "RoPE other than base 10000 over whole heads (half layout, unscaled)")  # fmt: skip
    require(rope or p.kind == "alibi", architecture, f"position kind {p.kind!r}")
    require(architecture == BAICHUAN or (rope and not m.norm_head), architecture, "ALiBi or a NormHead (Baichuan-7B has neither)")
    out = {
        "architectures": [architecture],
        "auto_map": AUTO_MAP[architecture],
        "model_type": "baichuan",
        "vocab_size": m.vocab_size,
        "hidden_size": m.d_model,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": cfg.n_heads,
        "hidden_act": "silu",
        "rms_norm_eps": cfg.norm.eps,
        "tie_word_embeddings": m.tie_embeddings,
        "position_embedding": "ROPE" if rope else "ALIBI",
        "norm_head": m.norm_head,
        **tokens_to_hf(cfg),
    }
    out["max_position_embeddings" if architecture == BAICHUAN_7B else "model_max_length"] = m.max_seq_len
    return out


def rules(cfg: Config) -> list:
    """LLaMA's names, but ``self_attn.W_pack`` holds q, k and v as row blocks [Q | K | V]."""
    w_pack = fused_qkv_rule("model.layers.{i}.self_attn.W_pack.{p}", "blocks")
    o_proj = Rename("model.layers.{i}.self_attn.o_proj.{p}", "layers.{i}.attn.o_proj.{p}")
    return [w_pack, o_proj, *decoder_rules()]


BAICHUAN_7B_FAMILY = HFFamily(
    BAICHUAN_7B, lambda hf, name: config_from_hf(hf, name, BAICHUAN_7B), lambda cfg: config_to_hf(cfg, BAICHUAN_7B), rules
)
BAICHUAN_FAMILY = HFFamily(
    BAICHUAN, lambda hf, name: config_from_hf(hf, name, BAICHUAN), lambda cfg: config_to_hf(cfg, BAICHUAN), rules
)
