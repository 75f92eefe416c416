"""``QWenLMHeadModel``: Qwen (v1) remote-code checkpoints (Qwen-1.8B / 7B / 14B / 72B).

The network is Qwen2's with one key/value head per query head: pre-RMSNorm,
RoPE (half layout, base ``rotary_emb_base``), q/k/v with a bias, o without
(``no_bias``), SwiGLU, untied head. Only the names and two packings differ:

    transformer.wte                 embed
    transformer.h.{i}.ln_1 / ln_2   attn_norm / mlp_norm
    attn.c_attn  (weight + bias)    q, k, v as row blocks [Q | K | V]
    attn.c_proj                     o_proj
    mlp.w2 / mlp.w1 / mlp.c_proj    gate_proj / up_proj / down_proj: QWenMLP computes
                                    c_proj(w1(x) * silu(w2(x))), so w2 is the gate
    transformer.ln_f, lm_head       final_norm, lm_head

``intermediate_size`` counts both SwiGLU halves: each of w1 and w2 is
``intermediate_size // 2`` wide. ``max_seq_len`` is ``seq_length``, the context
the model was trained at.

Not implemented: ``use_dynamic_ntk`` and ``use_logn_attn``. Both are inference
tricks that change nothing for sequences up to ``seq_length`` tokens: past it,
Qwen's code raises the RoPE base by the NTK factor and scales each query by
log_{seq_length}(position). archzoo loads such configs (Qwen-7B and Qwen-14B
ship with both on) and computes exactly Qwen's outputs up to ``seq_length``
tokens; beyond it, it keeps the plain RoPE and scale, so its logits there differ
from Qwen's remote code. Saved folders keep both flags off, which says so.
"""

from __future__ import annotations

from ...config import Config
from .family import HFFamily, require, tokens_from_hf, tokens_to_hf
from .rules import Drop, Rename, fused_qkv_rule

ARCHITECTURE = "QWenLMHeadModel"


def config_from_hf(hf: dict, name: str) -> dict:
    d_model, n_heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("kv_channels") or d_model // n_heads
    biased = not hf.get("no_bias", True)
    attention = {"n_heads": n_heads, "qkv_bias": True, "o_bias": biased}
    if head_dim * n_heads != d_model:
        attention["head_dim"] = head_dim
    position = {"kind": "rope", "theta": float(hf.get("rotary_emb_base", hf.get("rope_theta", 10000))), "layout": "half"}
    if hf.get("rotary_pct", 1.0) != 1.0:
        position["rotary_fraction"] = float(hf["rotary_pct"])
    return {
        "name": name,
        "family": "qwen",
        "source": f"Qwen (v1) remote-code checkpoint ({ARCHITECTURE})",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": d_model,
            "n_layers": hf["num_hidden_layers"],
            "max_seq_len": hf.get("seq_length") or hf.get("max_position_embeddings", 8192),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        },
        "norm": {"kind": "rmsnorm", "eps": float(hf.get("layer_norm_epsilon", 1e-6)), "placement": "pre"},
        "attention": attention,
        "position": position,
        "mlp": {"kind": "swiglu", "hidden": hf["intermediate_size"] // 2, "bias": biased},
        "tokens": tokens_from_hf(hf),
    }


def config_to_hf(cfg: Config) -> dict:
    a, p, m = cfg.attention, cfg.position, cfg.model
    require(a.kind == "mha" and cfg.moe is None and cfg.n_kv_heads == cfg.n_heads, ARCHITECTURE, "grouped or latent attention")
    require(a.qkv_bias and a.o_bias == cfg.mlp.bias and not a.qk_norm and a.softmax_scale is None, ARCHITECTURE,
            "biases other than q/k/v (plus o and MLP together: no_bias = false), q/k norms or a softmax scale")  # fmt: skip
    require(cfg.norm.kind == "rmsnorm" and cfg.norm.placement == "pre" and not cfg.norm.residual_from_normed and not m.embedding_norm, ARCHITECTURE,
            "norms other than pre-RMSNorm")  # fmt: skip
    require(p.kind == "rope" and p.layout == "half" and p.scaling is None, ARCHITECTURE, "positions other than unscaled half-layout RoPE")
    require(cfg.mlp.kind == "swiglu" and not m.norm_head, ARCHITECTURE, "MLPs other than SwiGLU, or a NormHead")
    return {
        "architectures": [ARCHITECTURE],
        "auto_map": {"AutoConfig": "configuration_qwen.QWenConfig", "AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
        "model_type": "qwen",
        "vocab_size": m.vocab_size,
        "hidden_size": m.d_model,
        "intermediate_size": 2 * cfg.mlp_hidden,
        "num_hidden_layers": m.n_layers,
        "num_attention_heads": cfg.n_heads,
        "kv_channels": cfg.head_dim,
        "seq_length": m.max_seq_len,
        "max_position_embeddings": m.max_seq_len,
        "layer_norm_epsilon": cfg.norm.eps,
        "rotary_emb_base": p.theta,
        "rotary_pct": p.rotary_fraction,
        "no_bias": not a.o_bias,
        "use_dynamic_ntk": False,
        "use_logn_attn": False,
        "scale_attn_weights": True,
        "tie_word_embeddings": m.tie_embeddings,
        **tokens_to_hf(cfg),
    }


def rules(cfg: Config) -> list:
    h = "transformer.h.{i}"
    return [
        Rename("transformer.wte.weight", "embed.weight"),
        Drop("transformer.rotary_emb.inv_freq"),
        Rename(h + ".ln_1.{p}", "layers.{i}.attn_norm.{p}"),
        fused_qkv_rule(h + ".attn.c_attn.{p}", "blocks"),
        Rename(h + ".attn.c_proj.{p}", "layers.{i}.attn.o_proj.{p}"),
        Rename(h + ".ln_2.{p}", "layers.{i}.mlp_norm.{p}"),
        Rename(h + ".mlp.w2.{p}", "layers.{i}.mlp.gate_proj.{p}"),
        Rename(h + ".mlp.w1.{p}", "layers.{i}.mlp.up_proj.{p}"),
        Rename(h + ".mlp.c_proj.{p}", "layers.{i}.mlp.down_proj.{p}"),
        Rename("transformer.ln_f.{p}", "final_norm.{p}"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


FAMILY = HFFamily(ARCHITECTURE, config_from_hf, config_to_hf, rules)
