"""Released MoE configs: exact totals against transformers, active counts against
the published figures, DeepSeek-V3's MTP module apart and its router bias a buffer.

The reference totals are independent of archzoo: ``transformers`` builds each
model on the ``meta`` device from the released ``config.json`` values below
(architecture keys only) and we count its parameters. The MoE fields of every
archzoo config are also compared, key by key, with the release.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import (
    DeepseekV2Config,
    DeepseekV2ForCausalLM,
    DeepseekV3Config,
    DeepseekV3ForCausalLM,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

import archzoo
from archzoo.config import config_paths

_DEEPSEEK_COMMON = {
    "rope_theta": 10000, "rms_norm_eps": 1e-06, "tie_word_embeddings": False, "attention_bias": False,
    "max_position_embeddings": 163840, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "v_head_dim": 128, "hidden_act": "silu", "moe_layer_freq": 1,
}  # fmt: skip

RELEASED = {
    "deepseek-v2-lite": ("deepseek-ai/DeepSeek-V2-Lite", "DeepseekV2ForCausalLM", _DEEPSEEK_COMMON | {
        "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408,
        "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16, "n_shared_experts": 2,
        "n_routed_experts": 64, "num_experts_per_tok": 6, "routed_scaling_factor": 1.0, "topk_method": "greedy",
        "n_group": 1, "topk_group": 1, "scoring_func": "softmax", "norm_topk_prob": False,
        "first_k_dense_replace": 1, "q_lora_rank": None,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    }),
    "deepseek-v2": ("deepseek-ai/DeepSeek-V2", "DeepseekV2ForCausalLM", _DEEPSEEK_COMMON | {
        "vocab_size": 102400, "hidden_size": 5120, "intermediate_size": 12288, "moe_intermediate_size": 1536,
        "num_hidden_layers": 60, "num_attention_heads": 128, "num_key_value_heads": 128, "n_shared_experts": 2,
        "n_routed_experts": 160, "num_experts_per_tok": 6, "routed_scaling_factor": 16.0,
        "topk_method": "group_limited_greedy", "n_group": 8, "topk_group": 3, "scoring_func": "softmax",
        "norm_topk_prob": False, "first_k_dense_replace": 1, "q_lora_rank": 1536,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707},
    }),
    "deepseek-v3": ("deepseek-ai/DeepSeek-V3", "DeepseekV3ForCausalLM", _DEEPSEEK_COMMON | {
        "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
        "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128, "n_shared_experts": 1,
        "n_routed_experts": 256, "num_experts_per_tok": 8, "routed_scaling_factor": 2.5, "topk_method": "noaux_tc",
        "n_group": 8, "topk_group": 4, "scoring_func": "sigmoid", "norm_topk_prob": True,
        "first_k_dense_replace": 3, "q_lora_rank": 1536, "num_nextn_predict_layers": 1,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    }),
    # DeepSeek-R1 is trained from DeepSeek-V3-Base: its config.json's architecture keys are V3's
    "deepseek-r1": ("deepseek-ai/DeepSeek-R1", "DeepseekV3ForCausalLM", _DEEPSEEK_COMMON | {
        "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
        "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128, "n_shared_experts": 1,
        "n_routed_experts": 256, "num_experts_per_tok": 8, "routed_scaling_factor": 2.5, "topk_method": "noaux_tc",
        "n_group": 8, "topk_group": 4, "scoring_func": "sigmoid", "norm_topk_prob": True,
        "first_k_dense_replace": 3, "q_lora_rank": 1536, "num_nextn_predict_layers": 1,
        "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                         "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    }),
    "qwen1.5-moe-a2.7b": ("Qwen/Qwen1.5-MoE-A2.7B", "Qwen2MoeForCausalLM", {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 5632, "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4,
        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 16,
        "max_position_embeddings": 8192, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
        "decoder_sparse_step": 1, "norm_topk_prob": False, "tie_word_embeddings": False,
    }),
    "qwen2-57b-a14b": ("Qwen/Qwen2-57B-A14B", "Qwen2MoeForCausalLM", {
        "vocab_size": 151936, "hidden_size": 3584, "intermediate_size": 18944, "moe_intermediate_size": 2560,
        "shared_expert_intermediate_size": 20480, "num_experts": 64, "num_experts_per_tok": 8,
        "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
        "max_position_embeddings": 131072, "rope_theta": 1000000.0, "rms_norm_eps": 1e-06,
        "decoder_sparse_step": 1, "norm_topk_prob": False, "tie_word_embeddings": False,
    }),
    "qwen3-30b-a3b": ("Qwen/Qwen3-30B-A3B", "Qwen3MoeForCausalLM", {
        "vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
        "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 48, "num_attention_heads": 32,
        "num_key_value_heads": 4, "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06, "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "tie_word_embeddings": False, "attention_bias": False,
    }),
    "qwen3-235b-a22b": ("Qwen/Qwen3-235B-A22B", "Qwen3MoeForCausalLM", {
        "vocab_size": 151936, "hidden_size": 4096, "intermediate_size": 12288, "moe_intermediate_size": 1536,
        "num_experts": 128, "num_experts_per_tok": 8, "num_hidden_layers": 94, "num_attention_heads": 64,
        "num_key_value_heads": 4, "head_dim": 128, "max_position_embeddings": 40960, "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-06, "decoder_sparse_step": 1, "mlp_only_layers": [], "norm_topk_prob": True,
        "tie_word_embeddings": False, "attention_bias": False,
    }),
}  # fmt: skip
"""name -> (Hugging Face repository, architecture, released config.json values)."""

BUILDS = {
    "DeepseekV2ForCausalLM": (DeepseekV2Config, DeepseekV2ForCausalLM),
    "DeepseekV3ForCausalLM": (DeepseekV3Config, DeepseekV3ForCausalLM),
    "Qwen2MoeForCausalLM": (Qwen2MoeConfig, Qwen2MoeForCausalLM),
    "Qwen3MoeForCausalLM": (Qwen3MoeConfig, Qwen3MoeForCausalLM),
}

PUBLISHED_ACTIVE = {
    "qwen3-30b-a3b": 3.3e9,  # model card: "30.5B total, 3.3B activated"
    "qwen3-235b-a22b": 22e9,  # model card: "235B total, 22B activated"
    "deepseek-v3": 37e9,  # DeepSeek-V3 report: "671B total, 37B activated for each token"
    "deepseek-r1": 37e9,  # DeepSeek-R1 model card: "671B total, 37B activated"
    "deepseek-v2": 21e9,  # DeepSeek-V2 report: "236B total, 21B activated"
    "qwen1.5-moe-a2.7b": 2.7e9,  # model card: "2.7B activated"
    "qwen2-57b-a14b": 14e9,  # Qwen2 report: "57B total, 14B activated"
}


def hf_model_on_meta(name: str):
    _, architecture, values = RELEASED[name]
    config_cls, model_cls = BUILDS[architecture]
    config = config_cls.from_dict(dict(values))
    with torch.device("meta"):
        return model_cls(config)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_total_equals_transformers_built_from_the_release(name):
    hf = hf_model_on_meta(name)
    assert archzoo.count_params(name).total == sum(p.numel() for p in hf.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED_ACTIVE))
def test_active_count_is_close_to_the_published_figure(name):
    report = archzoo.count_params(name)
    assert report.active == pytest.approx(PUBLISHED_ACTIVE[name], rel=0.03)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_active_is_total_minus_the_unchosen_routed_experts(name):
    cfg, report = archzoo.load_config(name), archzoo.count_params(name)
    m = cfg.moe
    moe_layers = sum(plan.mlp == "moe" for plan in cfg.layer_plan)
    unchosen = moe_layers * (m.n_experts - m.top_k) * 3 * cfg.model.d_model * m.expert_hidden
    assert report.active == report.total - unchosen


def test_deepseek_v3_correction_bias_is_a_buffer_and_mtp_is_apart():
    report = archzoo.count_params("deepseek-v3")
    hf = hf_model_on_meta("deepseek-v3")
    hf_bias = sum(b.numel() for n, b in hf.named_buffers() if n.endswith("e_score_correction_bias"))
    assert hf_bias == 58 * 256
    assert sum(report.buffers.values()) == hf_bias
    # one MTP module (DeepSeek-V3 report, sec. 2.2): an MoE decoder layer, the projection
    # M [d, 2d], norms on both inputs and before the shared head; built here from transformers' layer
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3DecoderLayer

    with torch.device("meta"):
        layer = DeepseekV3DecoderLayer(hf.config, layer_idx=61)
    d = 7168
    assert report.mtp == sum(p.numel() for p in layer.parameters()) + 2 * d * d + 3 * d
    # the checkpoint stores its own embedding and head copies: 671B + 14B = 685B on the model card
    stored_mtp = report.mtp + 2 * 129280 * d
    assert round(stored_mtp / 1e9) == 13 and round((report.total + stored_mtp) / 1e9) == 684


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_moe_and_mla_fields_match_the_release(name):
    repo, architecture, r = RELEASED[name]
    cfg = archzoo.load_config(name)
    assert repo in cfg.source
    m, a = cfg.moe, cfg.attention
    n_experts = r.get("n_routed_experts", r.get("num_experts"))
    assert (m.n_experts, m.top_k, m.expert_hidden) == (n_experts, r["num_experts_per_tok"], r["moe_intermediate_size"])
    assert m.normalize_top_k == r["norm_topk_prob"]
    assert cfg.model.max_seq_len == r["max_position_embeddings"]
    assert cfg.norm.eps == r["rms_norm_eps"] and cfg.position.theta == r["rope_theta"]
    assert (cfg.model.vocab_size, cfg.model.d_model, cfg.model.n_layers) == (
        r["vocab_size"], r["hidden_size"], r["num_hidden_layers"])  # fmt: skip
    if "n_routed_experts" in r:  # DeepSeek
        assert m.scoring == r["scoring_func"] and m.routed_scaling_factor == r["routed_scaling_factor"]
        assert (m.n_groups, m.topk_groups, m.first_dense_layers) == (
            r["n_group"], r["topk_group"], r["first_k_dense_replace"])  # fmt: skip
        assert m.correction_bias == (r["topk_method"] == "noaux_tc")
        assert m.n_shared_experts == r["n_shared_experts"] and m.shared_hidden is None
        assert a.kind == "mla" and a.q_lora_rank == (r["q_lora_rank"] or 0)
        assert (a.kv_lora_rank, a.qk_nope_head_dim, a.qk_rope_head_dim, a.v_head_dim) == (512, 128, 64, 128)
        assert cfg.position.layout == "interleaved"
        s, rs = cfg.position.scaling, r["rope_scaling"]
        assert (s.kind, s.factor, s.original_max_seq_len) == (
            rs["type"],
            rs["factor"],
            rs["original_max_position_embeddings"],
        )
        assert (s.mscale, s.mscale_all_dim, s.beta_fast, s.beta_slow) == (
            rs["mscale"], rs["mscale_all_dim"], rs["beta_fast"], rs["beta_slow"])  # fmt: skip
        assert cfg.model.mtp_layers == r.get("num_nextn_predict_layers", 0)
    else:  # Qwen-MoE
        assert m.scoring == "softmax" and m.n_groups == 1 and m.routed_scaling_factor == 1.0
        assert m.sparse_step == r["decoder_sparse_step"] and list(m.dense_layers) == r.get("mlp_only_layers", [])
        shared = r.get("shared_expert_intermediate_size", 0)
        assert (m.shared_hidden or 0) == shared and m.shared_gate == bool(shared)
        assert a.n_heads == r["num_attention_heads"] and cfg.n_kv_heads == r["num_key_value_heads"]
        assert cfg.head_dim == r.get("head_dim", r["hidden_size"] // r["num_attention_heads"])
        qwen3 = architecture == "Qwen3MoeForCausalLM"
        assert a.qk_norm == qwen3 and a.qkv_bias == (not qwen3)  # Qwen2-MoE: q/k/v biases; Qwen3-MoE: q/k norm


def test_every_released_moe_config_is_checked():
    released_moe = {
        name
        for name, path in config_paths().items()
        if path.parent.name in ("deepseek", "qwen-moe") and not name.endswith("-tiny")
        and archzoo.load_config(path).moe is not None
    }
    # DeepSeekMoE 16B: no transformers class; counted by a closed form in test_added_configs.py
    assert released_moe == set(RELEASED) | {"deepseek-moe-16b"}


def test_count_params_builds_nothing_real():
    # meta device: no storage behind any tensor (timing is measured in the benchmark notes, not here)
    from archzoo.models.decoder import build_model

    model = build_model("deepseek-v3", device="meta")
    assert all(p.is_meta for p in model.parameters())
    assert math.isclose(archzoo.count_params("deepseek-v3").total / 1e9, 671.03, rel_tol=1e-4)
