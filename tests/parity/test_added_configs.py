"""The configs added for issue 14: each TOML says what its release's config.json says,
and the remote-code ones (no ``transformers`` class) count what their modeling code builds.

The dense ones with a ``transformers`` class are counted against it in
``test_param_counts.py`` (DeepSeek-R1 in ``test_moe_param_counts.py``). Here:

- every added TOML equals the archzoo config that the released config.json maps to
  (``models/hf``, the map ``load_pretrained`` uses), section by section: norm eps,
  RoPE base and scaling, context, tying, biases, widths;
- Baichuan 2, ChatGLM3-6B, GLM-130B and DeepSeekMoE-16B: a closed form written
  from the modules their modeling code creates, with the numbers of the release,
  and (where ``transformers`` has a class of the same shapes) that class on ``meta``;
- the authors' published sizes, to the precision they publish them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import GlmConfig, GlmForCausalLM, LlamaConfig, LlamaForCausalLM

import archzoo
from archzoo.config import Config
from archzoo.models.hf.config_json import config_dict_from_hf


def _load_sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_added = _load_sibling("released_hf_configs_added")
RELEASED_ADDED, REMOTE = _added.RELEASED_ADDED, _added.REMOTE_CODE_ADDED
MAPPED = sorted(set(RELEASED_ADDED) | {"baichuan2-7b", "baichuan2-13b", "chatglm3-6b", "deepseek-moe-16b"})


def sections(cfg: Config) -> dict:
    """Everything but the names, the prose, and the special-token ids config.json does not carry."""
    d = cfg.to_dict()
    return {k: v for k, v in d.items() if k not in ("name", "family", "source", "description", "tokens")}


def _entry(name: str) -> dict:
    return RELEASED_ADDED.get(name) or REMOTE[name]


@pytest.mark.parametrize("name", MAPPED)
def test_toml_is_what_the_released_config_json_says(name):
    entry = _entry(name)
    mapped = Config.from_dict(config_dict_from_hf(dict(entry["config"]), name, entry["repo"]))
    ours = archzoo.load_config(name)
    assert sections(ours) == sections(mapped)
    assert entry["repo"] in ours.source


def _meta_count(model_cls, config) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in model_cls(config).parameters())


@pytest.mark.parametrize("name", ["baichuan2-7b", "baichuan2-13b"])
def test_baichuan2_count_by_closed_form(name):
    """modeling_baichuan.py (Baichuan 2): embed_tokens V d; per layer W_pack 3d^2, o_proj d^2 (no biases),
    gate/up/down 3 d h, two RMSNorm gains 2d; final norm d; NormHead's weight V d (a plain [V, d] matrix:
    it is normalised in the forward, not stored normalised)."""
    c = REMOTE[name]["config"]
    V, d, L, h = c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    expected = 2 * V * d + L * (4 * d * d + 3 * d * h + 2 * d) + d
    assert archzoo.count_params(name).total == expected
    assert archzoo.load_config(name).model.norm_head and c["vocab_size"] == 125696


def test_baichuan2_7b_count_equals_llama_of_the_same_shapes():
    """Baichuan 2 7B is LLaMA's module tree with q, k, v fused (same sizes) and a NormHead (same weight)."""
    c = REMOTE["baichuan2-7b"]["config"]
    llama = LlamaConfig.from_dict({**c, "architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    assert archzoo.count_params("baichuan2-7b").total == _meta_count(LlamaForCausalLM, llama)


def test_baichuan2_published_sizes():
    # Baichuan 2 report, Table 2: "7B" and "13B"; the model cards' "7.5B" / "13.9B" style sizes
    assert round(archzoo.count_params("baichuan2-7b").total / 1e8) == 75
    assert round(archzoo.count_params("baichuan2-13b").total / 1e8) == 139


def test_chatglm3_6b_count_equals_glm_of_the_same_shapes():
    """ChatGLM3-6B's modules (modeling_chatglm.py) are ChatGLM2's, which transformers' GlmForCausalLM
    reproduces with LLaMA names: fused QKV with bias (3 sizes: 32 q, 2 k, 2 v heads of 128), dense
    without bias, fused gate/up 2 x 13696, two RMSNorms per layer, untied output_layer."""
    c = REMOTE["chatglm3-6b"]["config"]
    glm = GlmConfig(
        vocab_size=c["padded_vocab_size"], hidden_size=c["hidden_size"], intermediate_size=c["ffn_hidden_size"],
        num_hidden_layers=c["num_layers"], num_attention_heads=c["num_attention_heads"],
        num_key_value_heads=c["multi_query_group_num"], head_dim=c["kv_channels"], attention_bias=c["add_qkv_bias"],
        tie_word_embeddings=c["tie_word_embeddings"], pad_token_id=c["pad_token_id"],
    )  # fmt: skip
    total = archzoo.count_params("chatglm3-6b").total
    assert total == _meta_count(GlmForCausalLM, glm) == archzoo.count_params("chatglm2-6b").total
    assert archzoo.load_config("chatglm3-6b").model.max_seq_len == c["seq_length"] == 8192


def test_glm_130b_count_by_closed_form():
    """SwissArmyTransformer's GLM130B with configs/model_glm_130b.sh: word_embeddings V d, also the
    output head (FinalForwardMixin: F.linear(h, word_embeddings.weight)); per layer query_key_value
    3d^2 + 3d, dense d^2 + d, dense_h_to_4h d (2f) + 2f (GeGLU, DeepNormWithGLUMixin), dense_4h_to_h
    f d + d, input / post-attention LayerNorms 2 x 2d; final LayerNorm 2d. No position table (RoPE)."""
    c = REMOTE["glm-130b"]["config"]
    V, d, L, f = c["vocab_size"], c["hidden_size"], c["num_layers"], c["inner_hidden_size"]
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + (d * 2 * f + 2 * f) + (f * d + d) + 4 * d
    expected = V * d + L * per_layer + 2 * d
    cfg = archzoo.load_config("glm-130b")
    assert archzoo.count_params(cfg).total == expected == 128_697_794_560
    assert (cfg.n_heads, cfg.model.max_seq_len) == (c["num_attention_heads"], c["max_sequence_length"])
    assert cfg.norm.placement == "deepnorm" and cfg.norm.residual_from_normed  # layernorm_order "post", DeepNorm
    assert cfg.deepnorm_alpha == pytest.approx((2 * 70) ** 0.5)
    # the paper's "130 billion" is this count rounded: 128.7B
    assert round(expected / 1e10) == 13


def test_deepseek_moe_16b_count_by_closed_form():
    """modeling_deepseek.py (DeepseekForCausalLM): embed_tokens and lm_head V d; per layer q/k/v/o 4 d^2
    (no biases) and two RMSNorms 2d; layer 0 (first_k_dense_replace = 1) a SwiGLU 3 d h; layers 1..27
    64 routed SwiGLU experts 3 d e each, the shared experts one SwiGLU of width 2 e, the gate E x d."""
    c = REMOTE["deepseek-moe-16b"]["config"]
    V, d, L = c["vocab_size"], c["hidden_size"], c["num_hidden_layers"]
    h, e, E, S = c["intermediate_size"], c["moe_intermediate_size"], c["n_routed_experts"], c["n_shared_experts"]
    dense, moe = c["first_k_dense_replace"], L - c["first_k_dense_replace"]
    expected = 2 * V * d + L * (4 * d * d + 2 * d) + d + dense * 3 * d * h + moe * (E * 3 * d * e + 3 * d * S * e + E * d)
    report = archzoo.count_params("deepseek-moe-16b")
    assert report.total == expected
    # DeepSeekMoE paper, Table 1 / model card: "16.4B total parameters", "2.8B activated"
    assert round(report.total / 1e8) == 164 and round(report.active / 1e8) == 28
    cfg = archzoo.load_config("deepseek-moe-16b")
    m = cfg.moe
    assert (m.n_experts, m.top_k, m.expert_hidden, m.n_shared_experts) == (E, c["num_experts_per_tok"], e, S)
    assert m.first_dense_layers == dense and m.normalize_top_k == c["norm_topk_prob"] and m.scoring == "softmax"
    assert cfg.attention.kind == "mha" and cfg.n_kv_heads == c["num_key_value_heads"]


@pytest.mark.parametrize("name", sorted(_added.HUB_SIZES))
def test_recalled_configs_have_the_size_the_hub_shows(name):
    assert RELEASED_ADDED[name]["copied_from"].startswith(_added.RECALLED)
    total = archzoo.count_params(name).total / 1e9
    assert f"{total:.3g}" == f"{_added.HUB_SIZES[name]:.3g}"


def test_every_recalled_config_has_a_hub_size():
    recalled = {name for name, entry in RELEASED_ADDED.items() if entry["copied_from"].startswith(_added.RECALLED)}
    assert recalled == set(_added.HUB_SIZES)
