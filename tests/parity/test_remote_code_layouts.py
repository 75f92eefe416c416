"""Remote-code layouts (no ``transformers`` class): Qwen v1, ChatGLM3, DeepSeekMoE (Baichuan: test_baichuan_layouts.py).

Where ``transformers`` has a class of the same network under other names, the
test converts between the two key layouts itself, from the remote code's
definition (W_pack = [Q | K | V] rows; Qwen v1's c_attn = [Q | K | V] with bias,
``c_proj(w1(x) * silu(w2(x)))``), and proves the mapping both ways:

    transformers model -> remote-code folder -> archzoo.load_pretrained : same logits
    archzoo model -> save_pretrained (remote-code folder) -> transformers model : same logits

Baichuan-13B's ALiBi network and DeepSeekMoE (MHA with DeepSeek's MoE layer) have
no such class: their reference forwards are written below from the architectures'
equations, on the remote-code tensors directly.
Baichuan 2's NormHead is checked against its equation, logits_v = h . w_v / ||w_v||.

Tolerance 1e-5 on float32 logits of size ~1: the two sides compute the same sums
of at most a few hundred terms in different orders (a fused or split matmul, SDPA
or an explicit softmax), and such sums differ by about N * eps * |x| ~ 300 x 6e-8 =
2e-5 at worst, ~1e-6 typically; anything wrong (a swapped half, a missing bias, an
unnormalised row) moves logits by 1e-2 or more.
"""

from __future__ import annotations

import pytest
import remote_code_reference as _ref  # a sibling module: pytest puts tests/parity (no __init__.py) on sys.path
import torch
import transformers

import archzoo

VOCAB = _ref.VOCAB
assert_close, batch, write_folder, hf_state = _ref.assert_close, _ref.batch, _ref.write_folder, _ref.hf_state
hf_logits, our_logits, perturb, saved_tensors = _ref.hf_logits, _ref.our_logits, _ref.perturb, _ref.saved_tensors
deepseek_moe_reference_logits = _ref.deepseek_moe_reference_logits


# ---- Qwen v1: Qwen2 with one kv head per head, c_attn and w1/w2 ------------------------------------

QWEN2 = transformers.Qwen2Config(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=64,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)  # fmt: skip


def qwen2_to_qwen_v1(state: dict, n_layers: int) -> dict:
    """Qwen2 keys -> QWenLMHeadModel's (modeling_qwen.py): c_attn = [Q | K | V] (weight and bias),
    QWenMLP = c_proj(w1(x) * silu(w2(x))): w2 is the gate, w1 the up projection."""
    out = {"transformer.wte.weight": state["model.embed_tokens.weight"],
           "transformer.ln_f.weight": state["model.norm.weight"], "lm_head.weight": state["lm_head.weight"]}  # fmt: skip
    for i in range(n_layers):
        s, h = f"model.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            out[h + f"attn.c_attn.{p}"] = torch.cat([state[s + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
        out[h + "attn.c_proj.weight"] = state[s + "self_attn.o_proj.weight"]
        out[h + "ln_1.weight"] = state[s + "input_layernorm.weight"]
        out[h + "ln_2.weight"] = state[s + "post_attention_layernorm.weight"]
        out[h + "mlp.w2.weight"] = state[s + "mlp.gate_proj.weight"]
        out[h + "mlp.w1.weight"] = state[s + "mlp.up_proj.weight"]
        out[h + "mlp.c_proj.weight"] = state[s + "mlp.down_proj.weight"]
    return out


def qwen_v1_to_qwen2(state: dict, n_layers: int) -> dict:
    out = {"model.embed_tokens.weight": state["transformer.wte.weight"],
           "model.norm.weight": state["transformer.ln_f.weight"], "lm_head.weight": state["lm_head.weight"]}  # fmt: skip
    for i in range(n_layers):
        s, h = f"model.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            for n, part in zip("qkv", state[h + f"attn.c_attn.{p}"].chunk(3)):
                out[s + f"self_attn.{n}_proj.{p}"] = part
        out[s + "self_attn.o_proj.weight"] = state[h + "attn.c_proj.weight"]
        out[s + "input_layernorm.weight"] = state[h + "ln_1.weight"]
        out[s + "post_attention_layernorm.weight"] = state[h + "ln_2.weight"]
        out[s + "mlp.gate_proj.weight"] = state[h + "mlp.w2.weight"]
        out[s + "mlp.up_proj.weight"] = state[h + "mlp.w1.weight"]
        out[s + "mlp.down_proj.weight"] = state[h + "mlp.c_proj.weight"]
    return out


QWEN_V1_CONFIG = {
    "architectures": ["QWenLMHeadModel"], "model_type": "qwen", "vocab_size": VOCAB, "hidden_size": 64,
    "intermediate_size": 2 * 88, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_channels": 16,
    "seq_length": 64, "max_position_embeddings": 64, "layer_norm_epsilon": 1e-6, "rotary_emb_base": 10000,
    "rotary_pct": 1.0, "no_bias": True, "use_dynamic_ntk": True, "use_logn_attn": True, "tie_word_embeddings": False,
}  # fmt: skip


@pytest.fixture
def qwen2():
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(QWEN2).eval()
    perturb(model)
    return model


def test_qwen_v1_folder_gives_qwen2_logits(tmp_path, qwen2):
    write_folder(tmp_path / "qwen", QWEN_V1_CONFIG, qwen2_to_qwen_v1(hf_state(qwen2), 2))
    ours = archzoo.load_pretrained(tmp_path / "qwen")
    assert (ours.config.mlp_hidden, ours.config.n_kv_heads, ours.config.model.max_seq_len) == (88, 4, 64)
    ids = batch()
    assert_close(our_logits(ours, ids), hf_logits(qwen2, ids))


def test_qwen_v1_saved_by_archzoo_is_read_as_qwen2(tmp_path, qwen2):
    write_folder(tmp_path / "qwen", QWEN_V1_CONFIG, qwen2_to_qwen_v1(hf_state(qwen2), 2))
    ours = archzoo.load_pretrained(tmp_path / "qwen")
    tensors, config = saved_tensors(ours, tmp_path / "back", "QWenLMHeadModel")
    assert config["intermediate_size"] == 176 and config["no_bias"] is True
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_qwen.QWenLMHeadModel"  # as Qwen-72B's config.json
    assert (config["use_dynamic_ntk"], config["use_logn_attn"]) == (False, False)  # not implemented: not claimed
    back = transformers.Qwen2ForCausalLM(QWEN2).eval()
    back.load_state_dict(qwen_v1_to_qwen2(tensors, 2), strict=True)
    ids = batch(seed=2)
    assert_close(hf_logits(back, ids), our_logits(ours, ids))


# ---- ChatGLM3-6B: the ChatGLM2 layout, against transformers' Glm (same network) -----------------


GLM = transformers.GlmConfig(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, attention_bias=True, rms_norm_eps=1e-5, tie_word_embeddings=False,
    max_position_embeddings=64, pad_token_id=0,
)  # fmt: skip


def glm_to_chatglm3(state: dict, n_layers: int) -> dict:
    """transformers Glm keys -> ChatGLM3-6B's (modeling_chatglm.py): query_key_value = [Q | K | V],
    dense_h_to_4h = the same gate-first [gate | up] as gate_up_proj."""
    out = {"transformer.embedding.word_embeddings.weight": state["model.embed_tokens.weight"],
           "transformer.encoder.final_layernorm.weight": state["model.norm.weight"],
           "transformer.output_layer.weight": state["lm_head.weight"]}  # fmt: skip
    for i in range(n_layers):
        s, h = f"model.layers.{i}.", f"transformer.encoder.layers.{i}."
        for p in ("weight", "bias"):
            out[h + f"self_attention.query_key_value.{p}"] = torch.cat([state[s + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
        out[h + "self_attention.dense.weight"] = state[s + "self_attn.o_proj.weight"]
        out[h + "input_layernorm.weight"] = state[s + "input_layernorm.weight"]
        out[h + "post_attention_layernorm.weight"] = state[s + "post_attention_layernorm.weight"]
        out[h + "mlp.dense_h_to_4h.weight"] = state[s + "mlp.gate_up_proj.weight"]
        out[h + "mlp.dense_4h_to_h.weight"] = state[s + "mlp.down_proj.weight"]
    return out


ARCH_CHATGLM3_TINY = {
    "architectures": ["ChatGLMModel"], "model_type": "chatglm", "add_bias_linear": False, "add_qkv_bias": True,
    "apply_residual_connection_post_layernorm": False, "ffn_hidden_size": 88, "hidden_size": 64,
    "kv_channels": 16, "layernorm_epsilon": 1e-5, "multi_query_attention": True, "multi_query_group_num": 2,
    "num_attention_heads": 4, "num_layers": 2, "original_rope": True, "padded_vocab_size": VOCAB,
    "post_layer_norm": True, "rmsnorm": True, "seq_length": 64, "tie_word_embeddings": False,
}  # fmt: skip
"""chatglm3-6b's config.json keys (released_hf_configs_added), at GLM's sizes."""


def test_chatglm3_folder_loads_to_glm_logits(tmp_path):
    torch.manual_seed(0)
    glm = transformers.GlmForCausalLM(GLM).eval()
    perturb(glm)
    write_folder(tmp_path / "glm3", ARCH_CHATGLM3_TINY, glm_to_chatglm3(hf_state(glm), 2))
    ours = archzoo.load_pretrained(tmp_path / "glm3")
    ids = batch()
    assert_close(our_logits(ours, ids), hf_logits(glm, ids))


def test_chatglm3_folder_saved_as_glm_is_read_by_transformers_natively(tmp_path):
    """The README's way out of remote code for ChatGLM2/3-style layers: save as GlmForCausalLM."""
    torch.manual_seed(1)
    glm = transformers.GlmForCausalLM(GLM).eval()
    perturb(glm, seed=2)
    write_folder(tmp_path / "glm3", {**ARCH_CHATGLM3_TINY}, glm_to_chatglm3(hf_state(glm), 2))
    ours = archzoo.load_pretrained(tmp_path / "glm3")
    archzoo.save_pretrained(ours, tmp_path / "hf", architecture="GlmForCausalLM")
    native = transformers.GlmForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = batch(seed=3)
    assert_close(hf_logits(native, ids), our_logits(ours, ids))


# ---- DeepSeekMoE 16B (DeepseekForCausalLM): against the equations --------------------------------


def random_deepseek_moe_checkpoint() -> tuple[dict, dict]:
    d, hidden, e_hidden, n_exp, shared, layers = 64, 96, 24, 6, 2, 3
    g = torch.Generator().manual_seed(4)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    mlp = lambda p, w: {p + "gate_proj.weight": r(w, d), p + "up_proj.weight": r(w, d), p + "down_proj.weight": r(d, w)}  # noqa: E731
    t = {"model.embed_tokens.weight": r(VOCAB, d) * 10, "lm_head.weight": r(VOCAB, d) * 3, "model.norm.weight": 1 + r(d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t |= {p + f"self_attn.{n}_proj.weight": r(d, d) for n in "qkvo"}
        t |= {p + "input_layernorm.weight": 1 + r(d), p + "post_attention_layernorm.weight": 1 + r(d)}
        if i == 0:
            t |= mlp(p + "mlp.", hidden)
        else:
            t |= {p + "mlp.gate.weight": r(n_exp, d) * 10} | mlp(p + "mlp.shared_experts.", shared * e_hidden)
            for e in range(n_exp):
                t |= mlp(p + f"mlp.experts.{e}.", e_hidden)
    config = {"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "vocab_size": VOCAB, "hidden_size": d,
              "intermediate_size": hidden, "moe_intermediate_size": e_hidden, "num_hidden_layers": layers,
              "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": n_exp, "n_shared_experts": shared,
              "num_experts_per_tok": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": False,
              "scoring_func": "softmax", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
              "hidden_act": "silu", "tie_word_embeddings": False}  # fmt: skip
    return t, config


def test_deepseek_moe_folder_matches_the_equations_both_ways(tmp_path):
    tensors, config = random_deepseek_moe_checkpoint()
    write_folder(tmp_path / "dsmoe", config, tensors)
    ours = archzoo.load_pretrained(tmp_path / "dsmoe")
    assert [plan.mlp for plan in ours.config.layer_plan] == ["dense", "moe", "moe"]
    ids = batch(seq=10)
    assert_close(our_logits(ours, ids), deepseek_moe_reference_logits(tensors, config, ids))
    back, back_config = saved_tensors(ours, tmp_path / "back", "DeepseekForCausalLM")
    assert sorted(back) == sorted(tensors) and back_config["auto_map"]["AutoModelForCausalLM"].endswith("DeepseekForCausalLM")
    ids = batch(seq=8, seed=6)
    assert_close(deepseek_moe_reference_logits(back, back_config, ids), our_logits(ours, ids))
