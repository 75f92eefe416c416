"""``BloomForCausalLM``: LayerNorm everywhere (with an embedding LayerNorm),
ALiBi, a fused per-head QKV, tanh-GeLU MLP, biases on every linear layer,
output head tied to the embedding.

BLOOM's ``query_key_value`` rows are laid out per head: [q_0 k_0 v_0 | q_1 k_1 v_1 | ...].
Its shape, [3 d, d], is the same for every head count that divides d, so the
weights cannot tell a wrong ``n_head`` from a right one: loading checks what can
be checked (n_head divides hidden_size, and ``n_head`` / ``num_attention_heads``
agree when both are given, ``checks.py``); transformers splits by the same field.
"""

from __future__ import annotations

from ...config import Config
from .family import HFFamily, require, tokens_from_hf, tokens_to_hf
from .rules import Rename, fused_qkv_rule

ARCHITECTURE = "BloomForCausalLM"


def config_from_hf(hf: dict, name: str) -> dict:
    d_model = hf.get("hidden_size") or hf["n_embed"]
    n_heads = hf.get("n_head") or hf["num_attention_heads"]
    norm = {"kind": "layernorm", "eps": float(hf.get("layer_norm_epsilon", 1e-5)), "placement": "pre"}
    if hf.get("apply_residual_connection_post_layernorm"):
        norm["residual_from_normed"] = True  # h = N(x) + F(N(x)) (blocks/residual.py)
    return {
        "name": name,
        "family": "bloom",
        "source": f"Hugging Face {ARCHITECTURE} checkpoint",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": d_model,
            "n_layers": hf.get("n_layer") or hf["num_hidden_layers"],
            "max_seq_len": hf.get("seq_length", 2048),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", True)),
            "embedding_norm": True,
        },
        "norm": norm,
        "attention": {"n_heads": n_heads, "qkv_bias": True, "o_bias": True},
        "position": {"kind": "alibi"},
        "mlp": {"kind": "gelu", "hidden": 4 * d_model, "bias": True, "gelu_approximate": "tanh"},
        "tokens": tokens_from_hf(hf),
    }


def config_to_hf(cfg: Config) -> dict:
    a, n = cfg.attention, cfg.norm
    require(a.kind == "mha" and cfg.n_kv_heads == cfg.n_heads, ARCHITECTURE, "grouped or latent attention")
    require(a.qkv_bias and a.o_bias and not a.qk_norm, ARCHITECTURE, "attention without all biases, or q/k norms")
    require(cfg.head_dim * cfg.n_heads == cfg.model.d_model, ARCHITECTURE, "head_dim != d_model / n_heads")
    require(cfg.position.kind == "alibi", ARCHITECTURE, "positions other than ALiBi")
    require(n.kind == "layernorm" and cfg.model.embedding_norm, ARCHITECTURE, "norms other than LayerNorm with an embedding LayerNorm")
    require(n.placement == "pre", ARCHITECTURE, f"norm placement {n.placement!r}")
    m = cfg.mlp
    require(m.kind == "gelu" and m.bias and m.gelu_approximate == "tanh", ARCHITECTURE, "MLPs other than biased tanh-GeLU")
    require(cfg.mlp_hidden == 4 * cfg.model.d_model, ARCHITECTURE, "an MLP width other than 4 x d_model")
    require(cfg.moe is None, ARCHITECTURE, "mixture-of-experts layers")
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "bloom",
        "vocab_size": cfg.model.vocab_size,
        "hidden_size": cfg.model.d_model,
        "n_layer": cfg.model.n_layers,
        "n_head": cfg.n_heads,
        "layer_norm_epsilon": n.eps,
        "apply_residual_connection_post_layernorm": n.residual_from_normed,
        "tie_word_embeddings": cfg.model.tie_embeddings,
        "seq_length": cfg.model.max_seq_len,
        **tokens_to_hf(cfg),
    }


def rules(cfg: Config) -> list:
    h = "transformer.h.{i}"
    return [
        Rename("transformer.word_embeddings.weight", "embed.weight"),
        Rename("transformer.word_embeddings_layernorm.{p}", "embed_norm.{p}"),
        Rename(h + ".input_layernorm.{p}", "layers.{i}.attn_norm.{p}"),
        fused_qkv_rule(h + ".self_attention.query_key_value.{p}", "per_head"),
        Rename(h + ".self_attention.dense.{p}", "layers.{i}.attn.o_proj.{p}"),
        Rename(h + ".post_attention_layernorm.{p}", "layers.{i}.mlp_norm.{p}"),
        Rename(h + ".mlp.dense_h_to_4h.{p}", "layers.{i}.mlp.up_proj.{p}"),
        Rename(h + ".mlp.dense_4h_to_h.{p}", "layers.{i}.mlp.down_proj.{p}"),
        Rename("transformer.ln_f.{p}", "final_norm.{p}"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


FAMILY = HFFamily(ARCHITECTURE, config_from_hf, config_to_hf, rules)
