"""``ChatGLMModel``: THUDM's remote-code checkpoints (ChatGLM-6B; ChatGLM2-6B,
ChatGLM3-6B and GLM-4-9B in their original, non-``-hf`` format).

Both generations share the architecture name; their config.json fields tell
them apart (``position_encoding_2d`` / ``inner_hidden_size`` for v1,
``ffn_hidden_size`` / ``kv_channels`` for v2), and the archzoo config the
fields produce chooses the weight rules.

ChatGLM-6B (v1), ``transformer.layers.{i}``:
    attention.query_key_value   per head interleaved: rows [q_0 k_0 v_0 | q_1 k_1 v_1 | ...]
    attention.dense, mlp.dense_h_to_4h / dense_4h_to_h (plain tanh-GeLU), all with bias
    input_layernorm / post_attention_layernorm: LayerNorm; DeepNorm wiring with the
    residual from the normalised input, alpha = sqrt(56) hard-coded (whatever num_layers)
    2D RoPE on q, k with float16-rounded frequencies; ``lm_head`` untied
ChatGLM2 (v2), ``transformer.encoder.layers.{i}``:
    self_attention.query_key_value   contiguous blocks [Q | K | V], K and V with
    ``multi_query_group_num`` heads; mlp.dense_h_to_4h fused SwiGLU, gate first;
    pre-RMSNorm; RoPE on the first half of each head, interleaved pairs,
    base 10000 x rope_ratio (GLM-4); ``transformer.output_layer`` untied

Cached ``inv_freq`` buffers in these checkpoints are dropped on load. ChatGLM-6B's
INT8 / INT4 checkpoints (``quantization_bit``) load into archzoo's quantized block
(``chatglm_quant.py``); the same rules split their codes and scales.
"""

from __future__ import annotations

import math

from ...config import Config
from . import chatglm_quant
from .family import HFFamily, QuantizedLayout, UnsupportedConfig, require, tokens_from_hf, tokens_to_hf
from .glm import fused_gated_rule
from .rules import Drop, Rename, fused_qkv_rule

ARCHITECTURE = "ChatGLMModel"
CHATGLM6B_ALPHA = math.sqrt(2 * 28)  # GLMBlock's num_layers default; ChatGLMModel never passes it
AUTO_MAP = {  # as the released config.json files name THUDM's modeling files (for trust_remote_code)
    "AutoConfig": "configuration_chatglm.ChatGLMConfig",
    "AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration",
}


def is_v1(hf: dict) -> bool:
    """ChatGLM-6B's config.json (v1 fields) rather than ChatGLM2's."""
    return "inner_hidden_size" in hf or "position_encoding_2d" in hf


# ---- config maps ---------------------------------------------------------------------------


def v1_from_hf(hf: dict, name: str) -> dict:
    if not hf.get("position_encoding_2d", True):
        raise UnsupportedConfig(f"{ARCHITECTURE}: position_encoding_2d = false (1-D RoPE over the whole head) is not implemented")
    if hf.get("pre_seq_len"):
        raise UnsupportedConfig(f"{ARCHITECTURE}: p-tuning prefixes (pre_seq_len) are not supported")
    chatglm_quant.recipe(hf)  # quantization_bit 8 / 4 loads (chatglm_quant.py); anything else is refused here
    d_model = hf["hidden_size"]
    tokens = tokens_from_hf(hf)
    for hf_key, key in (("mask_token_id", "mask_id"), ("gmask_token_id", "gmask_id"), ("bos_token_id", "sop_id"), ("eos_token_id", "eop_id")):
        if isinstance(hf.get(hf_key), int):
            tokens[key] = hf[hf_key]
    return {
        "name": name,
        "family": "glm",
        "source": f"ChatGLM-6B remote-code checkpoint ({ARCHITECTURE})",
        "model": {
            "vocab_size": hf["vocab_size"],
            "d_model": d_model,
            "n_layers": hf["num_layers"],
            "max_seq_len": hf.get("max_sequence_length", 2048),
            # the released head is a matrix of its own (docs/glm.md §2.2); a folder that says tie_word_embeddings
            # true meets the loader's rule: its lm_head.weight must equal the embedding, or loading stops
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        },
        "norm": {
            "kind": "layernorm",
            "eps": float(hf.get("layernorm_epsilon", 1e-5)),
            "placement": "deepnorm",
            "residual_from_normed": True,
            "deepnorm_alpha": CHATGLM6B_ALPHA,
        },
        "attention": {"n_heads": hf["num_attention_heads"], "qkv_bias": True, "o_bias": True},
        "position": {"kind": "glm2d", "theta": 10000.0, "fp16_frequencies": True},
        "mlp": {"kind": "gelu", "hidden": hf.get("inner_hidden_size") or 4 * d_model, "bias": True, "gelu_approximate": "tanh"},
        "tokens": tokens,
    }


def v2_from_hf(hf: dict, name: str) -> dict:
    if hf.get("quantization_bit"):
        raise UnsupportedConfig(f"{ARCHITECTURE}: quantized ChatGLM2 / GLM-4 checkpoints (quantization_bit) are not "
                                "supported; ChatGLM-6B's are")
    if hf.get("apply_residual_connection_post_layernorm"):
        raise UnsupportedConfig(f"{ARCHITECTURE}: apply_residual_connection_post_layernorm = true is not implemented")
    if not hf.get("post_layer_norm", True):
        raise UnsupportedConfig(f"{ARCHITECTURE}: post_layer_norm = false (no final norm) is not implemented")
    if not hf.get("original_rope", True):
        raise UnsupportedConfig(f"{ARCHITECTURE}: original_rope = false is not implemented")
    n_heads = hf["num_attention_heads"]
    head_dim = hf.get("kv_channels") or hf["hidden_size"] // n_heads
    n_kv = hf.get("multi_query_group_num", n_heads) if hf.get("multi_query_attention") else n_heads
    linear_bias = bool(hf.get("add_bias_linear", False))
    return {
        "name": name,
        "family": "glm",
        "source": f"ChatGLM2 / GLM-4 remote-code checkpoint ({ARCHITECTURE})",
        "model": {
            "vocab_size": hf.get("padded_vocab_size") or hf["vocab_size"],
            "d_model": hf["hidden_size"],
            "n_layers": hf["num_layers"],
            "max_seq_len": hf.get("seq_length", 2048),
            "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
        },
        "norm": {
            "kind": "rmsnorm" if hf.get("rmsnorm", True) else "layernorm",
            "eps": float(hf.get("layernorm_epsilon", 1e-5)),
            "placement": "pre",
        },
        "attention": {
            "n_heads": n_heads,
            "n_kv_heads": n_kv,
            "head_dim": head_dim,
            "qkv_bias": bool(hf.get("add_qkv_bias", False)) or linear_bias,
            "o_bias": linear_bias,
        },
        "position": {
            "kind": "rope",
            "theta": 10000.0 * float(hf.get("rope_ratio", 1.0)),
            "layout": "interleaved",
            "rotary_fraction": 0.5,
        },
        "mlp": {"kind": "swiglu", "hidden": hf["ffn_hidden_size"], "bias": linear_bias, "gated_half_order": "gate_first"},
        "tokens": tokens_from_hf({**hf, "vocab_size": hf.get("padded_vocab_size") or hf["vocab_size"]}),
    }


def config_from_hf(hf: dict, name: str) -> dict:
    return v1_from_hf(hf, name) if is_v1(hf) else v2_from_hf(hf, name)


def v1_to_hf(cfg: Config) -> dict:
    a, n, m, t = cfg.attention, cfg.norm, cfg.mlp, cfg.tokens
    require(cfg.n_kv_heads == cfg.n_heads and a.qkv_bias and a.o_bias, ARCHITECTURE, "v1 attention other than MHA with biases")
    require(cfg.head_dim * cfg.n_heads == cfg.model.d_model and a.softmax_scale is None, ARCHITECTURE, "a free head_dim or softmax scale")
    require(n.kind == "layernorm" and n.placement == "deepnorm" and n.residual_from_normed, ARCHITECTURE, "v1 norms other than ChatGLM-6B's DeepNorm")
    require(math.isclose(cfg.deepnorm_alpha, CHATGLM6B_ALPHA), ARCHITECTURE, f"a DeepNorm alpha other than sqrt(56) (got {cfg.deepnorm_alpha})")
    require(cfg.position.theta == 10000.0 and cfg.position.fp16_frequencies, ARCHITECTURE, "2D RoPE other than base 10000 with fp16 frequencies")
    require(m.kind == "gelu" and m.bias and m.gelu_approximate == "tanh", ARCHITECTURE, "v1 MLPs other than biased tanh-GeLU")
    require(not cfg.model.tie_embeddings and not cfg.model.embedding_norm, ARCHITECTURE, "tied heads or an embedding norm")
    out = {
        "architectures": [ARCHITECTURE],
        "auto_map": AUTO_MAP,
        "model_type": "chatglm",
        "vocab_size": cfg.model.vocab_size,
        "hidden_size": cfg.model.d_model,
        "inner_hidden_size": cfg.mlp_hidden,
        "num_layers": cfg.model.n_layers,
        "num_attention_heads": cfg.n_heads,
        "max_sequence_length": cfg.model.max_seq_len,
        "layernorm_epsilon": n.eps,
        "position_encoding_2d": True,
        "tie_word_embeddings": False,  # said outright: the remote code's PretrainedConfig would default to true
        **tokens_to_hf(cfg),
    }
    out.update(mask_token_id=t.mask_id, gmask_token_id=t.gmask_id)
    if t.sop_id is not None:
        out["bos_token_id"] = t.sop_id
    if t.eop_id is not None:
        out["eos_token_id"] = t.eop_id
    return out


def v2_to_hf(cfg: Config) -> dict:
    a, n, m, p = cfg.attention, cfg.norm, cfg.mlp, cfg.position
    require(a.kind == "mha" and cfg.moe is None and not a.qk_norm and a.softmax_scale is None, ARCHITECTURE, "v2 attention other than GQA")
    require(a.o_bias == m.bias and (a.qkv_bias or not a.o_bias), ARCHITECTURE, "biases other than add_qkv_bias / add_bias_linear")
    require(n.placement == "pre" and not n.residual_from_normed and not cfg.model.embedding_norm, ARCHITECTURE, "v2 norms other than pre-norm")
    require(p.kind == "rope" and p.layout == "interleaved" and p.rotary_fraction == 0.5 and p.scaling is None,
            ARCHITECTURE, "v2 positions other than unscaled interleaved RoPE on half of each head")  # fmt: skip
    require(m.kind == "swiglu" and m.gated_half_order == "gate_first", ARCHITECTURE, "v2 MLPs other than gate-first SwiGLU")
    return {
        "architectures": [ARCHITECTURE],
        "auto_map": AUTO_MAP,
        "model_type": "chatglm",
        "vocab_size": cfg.model.vocab_size,
        "padded_vocab_size": cfg.model.vocab_size,
        "hidden_size": cfg.model.d_model,
        "ffn_hidden_size": cfg.mlp_hidden,
        "num_layers": cfg.model.n_layers,
        "num_attention_heads": cfg.n_heads,
        "kv_channels": cfg.head_dim,
        "multi_query_attention": cfg.n_kv_heads != cfg.n_heads,
        "multi_query_group_num": cfg.n_kv_heads,
        "seq_length": cfg.model.max_seq_len,
        "layernorm_epsilon": n.eps,
        "rmsnorm": n.kind == "rmsnorm",
        "add_bias_linear": a.o_bias,
        "add_qkv_bias": a.qkv_bias,
        "apply_residual_connection_post_layernorm": False,
        "post_layer_norm": True,
        "original_rope": True,
        "rope_ratio": p.theta / 10000.0,
        "tie_word_embeddings": cfg.model.tie_embeddings,
        **tokens_to_hf(cfg),
    }


def config_to_hf(cfg: Config) -> dict:
    return v1_to_hf(cfg) if cfg.position.kind == "glm2d" else v2_to_hf(cfg)


# ---- weight rules ----------------------------------------------------------------------------

def v1_rules(cfg: Config) -> list:
    h = "transformer.layers.{i}"
    return [
        Rename("transformer.word_embeddings.weight", "embed.weight"),
        Drop(h + ".attention.rotary_emb.inv_freq"),
        Rename(h + ".input_layernorm.{p}", "layers.{i}.attn_norm.{p}"),
        fused_qkv_rule(h + ".attention.query_key_value.{p}", "per_head"),
        Rename(h + ".attention.dense.{p}", "layers.{i}.attn.o_proj.{p}"),
        Rename(h + ".post_attention_layernorm.{p}", "layers.{i}.mlp_norm.{p}"),
        Rename(h + ".mlp.dense_h_to_4h.{p}", "layers.{i}.mlp.up_proj.{p}"),
        Rename(h + ".mlp.dense_4h_to_h.{p}", "layers.{i}.mlp.down_proj.{p}"),
        Rename("transformer.final_layernorm.{p}", "final_norm.{p}"),
        Rename("lm_head.weight", "lm_head.weight"),
    ]


def v2_rules(cfg: Config) -> list:
    h = "transformer.encoder.layers.{i}"
    return [
        Rename("transformer.embedding.word_embeddings.weight", "embed.weight"),
        Drop("transformer.rotary_pos_emb.inv_freq"),
        Rename(h + ".input_layernorm.{p}", "layers.{i}.attn_norm.{p}"),
        fused_qkv_rule(h + ".self_attention.query_key_value.{p}", "blocks"),
        Rename(h + ".self_attention.dense.{p}", "layers.{i}.attn.o_proj.{p}"),
        Rename(h + ".post_attention_layernorm.{p}", "layers.{i}.mlp_norm.{p}"),
        fused_gated_rule(h + ".mlp.dense_h_to_4h.{p}", "layers.{i}.mlp"),
        Rename(h + ".mlp.dense_4h_to_h.{p}", "layers.{i}.mlp.down_proj.{p}"),
        Rename("transformer.encoder.final_layernorm.{p}", "final_norm.{p}"),
        Rename("transformer.output_layer.weight", "lm_head.weight"),
    ]


def rules(cfg: Config) -> list:
    return v1_rules(cfg) if cfg.position.kind == "glm2d" else v2_rules(cfg)


FAMILY = HFFamily(
    ARCHITECTURE, config_from_hf, config_to_hf, rules,
    quantized=QuantizedLayout(chatglm_quant.recipe, chatglm_quant.integer_key, chatglm_quant.codes_to_archzoo),
)
