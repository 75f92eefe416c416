"""Released configs have exactly the parameters of the released checkpoints.

The reference is independent of archzoo: ``transformers`` builds the model on
the ``meta`` device from the values of the released ``config.json``
(``released_hf_configs.py``), and we count its parameters. Architectures that
``transformers`` lacks are built as the class whose shapes they share, and
the reason is written next to each; Baichuan-13B (ALiBi) is counted by a closed
form from its released numbers. Where the owners published an exact count,
that is checked too. Besides the shapes, the norm eps, RoPE base and scaling,
context length and head tying of each config are compared with the release.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from transformers import (
    BloomConfig,
    BloomForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

import archzoo
from archzoo.config import config_paths


def _load_sibling(name: str):
    """Import a data module next to this file, whatever pytest's import mode."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_data = _load_sibling("released_hf_configs")
_added = _load_sibling("released_hf_configs_added")
RELEASED = _data.RELEASED | _added.RELEASED_ADDED
PUBLISHED_PARAM_COUNTS = _data.PUBLISHED_PARAM_COUNTS
REMOTE_CODE_ADDED = _added.REMOTE_CODE_ADDED  # counted by closed forms in test_added_configs.py

DENSE_FAMILY_DIRS = ("llama", "bloom", "qwen", "baichuan", "yi", "deepseek")  # the R1 distills are dense


def qwen_v1_as_qwen2(released: dict) -> Qwen2Config:
    """Qwen-7B (v1, remote code ``QWenLMHeadModel``) in Qwen2's terms.

    Its modules have Qwen2's shapes: ``c_attn`` is q, k and v fused with a
    bias, ``c_proj`` has none (``no_bias``), every head is ``kv_channels``
    wide with no grouping, ``w1`` and ``w2`` are each ``intermediate_size // 2``
    wide (``QWenMLP``), RMSNorm gains only, untied head.
    """
    assert released["kv_channels"] * released["num_attention_heads"] == released["hidden_size"]
    assert released["no_bias"] and released["rotary_pct"] == 1.0
    return Qwen2Config(
        vocab_size=released["vocab_size"],
        hidden_size=released["hidden_size"],
        intermediate_size=released["intermediate_size"] // 2,
        num_hidden_layers=released["num_hidden_layers"],
        num_attention_heads=released["num_attention_heads"],
        num_key_value_heads=released["num_attention_heads"],
        max_position_embeddings=released["seq_length"],
        rms_norm_eps=released["layer_norm_epsilon"],
        rope_parameters={"rope_type": "default", "rope_theta": float(released["rotary_emb_base"])},
        tie_word_embeddings=released["tie_word_embeddings"],
    )


def _from_dict(config_cls):
    return lambda released: config_cls.from_dict(released)


# released "architectures" -> (released config -> transformers config, transformers model class)
TRANSFORMERS_BUILDS = {
    "LlamaForCausalLM": (_from_dict(LlamaConfig), LlamaForCausalLM),
    "BloomForCausalLM": (_from_dict(BloomConfig), BloomForCausalLM),
    "Qwen2ForCausalLM": (_from_dict(Qwen2Config), Qwen2ForCausalLM),
    "Qwen3ForCausalLM": (_from_dict(Qwen3Config), Qwen3ForCausalLM),
    # Baichuan-7B is LLaMA with q, k, v fused into W_pack (no biases): LLaMA's shapes, same keys.
    "BaiChuanForCausalLM": (_from_dict(LlamaConfig), LlamaForCausalLM),
    "QWenLMHeadModel": (qwen_v1_as_qwen2, Qwen2ForCausalLM),
}

BUILT_BY_TRANSFORMERS = sorted(
    name for name, entry in RELEASED.items() if entry["config"]["architectures"][0] in TRANSFORMERS_BUILDS
)


def hf_config(name: str):
    released = RELEASED[name]["config"]
    to_config, _ = TRANSFORMERS_BUILDS[released["architectures"][0]]
    return to_config(released)


def transformers_param_count(name: str) -> int:
    released = RELEASED[name]["config"]
    _, model_cls = TRANSFORMERS_BUILDS[released["architectures"][0]]
    config = hf_config(name)
    with torch.device("meta"):
        model = model_cls(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", BUILT_BY_TRANSFORMERS)
def test_param_count_equals_transformers_built_from_released_config(name):
    assert archzoo.count_params(name).total == transformers_param_count(name)


def test_baichuan_13b_param_count_by_closed_form():
    """Baichuan-13B (ALiBi; not in transformers), from modeling_baichuan.py's modules:
    embedding and untied head V d each; per layer W_pack 3d^2 and o_proj d^2 (no biases),
    gate/up/down 3 d h, two RMSNorm gains 2d; a final RMSNorm d."""
    c = RELEASED["baichuan-13b"]["config"]
    V, d, L, h = c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"]
    assert c["tie_word_embeddings"] is False
    expected = V * d * 2 + L * (4 * d * d + 3 * d * h + 2 * d) + d
    assert archzoo.count_params("baichuan-13b").total == expected == 13_264_901_120


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAM_COUNTS))
def test_param_count_equals_published_figure(name):
    assert archzoo.count_params(name).total == PUBLISHED_PARAM_COUNTS[name]


def _rope_facts(hf) -> dict:
    rope = dict(hf.rope_parameters)
    facts = {"theta": float(rope.pop("rope_theta")), "kind": rope.pop("rope_type")}
    return facts | rope


def _our_rope_facts(cfg) -> dict:
    p = cfg.position
    facts = {"theta": p.theta, "kind": "default"}
    if p.scaling is not None:
        s = p.scaling
        facts |= {
            "kind": s.kind,
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_seq_len,
        }
    return facts


@pytest.mark.parametrize("name", BUILT_BY_TRANSFORMERS)
def test_norm_eps_rope_context_and_tying_match_the_release(name):
    cfg, hf = archzoo.load_config(name), hf_config(name)
    released = RELEASED[name]["config"]
    eps = hf.layer_norm_epsilon if isinstance(hf, BloomConfig) else hf.rms_norm_eps
    assert cfg.norm.eps == eps
    assert cfg.norm.kind == ("layernorm" if isinstance(hf, BloomConfig) else "rmsnorm")
    assert cfg.model.tie_embeddings == hf.tie_word_embeddings
    if isinstance(hf, BloomConfig):
        assert cfg.position.kind == "alibi"
        assert cfg.model.max_seq_len == 2048  # BLOOM paper, section 3.5: sequence length 2048
    else:
        assert cfg.position.kind == "rope" and cfg.position.layout == "half"
        assert _our_rope_facts(cfg) == _rope_facts(hf)
        assert cfg.model.max_seq_len == hf.max_position_embeddings
    if "max_position_embeddings" in released and "seq_length" not in released:
        assert cfg.model.max_seq_len == released["max_position_embeddings"]


def test_baichuan_13b_eps_context_and_positions_match_the_release():
    cfg, released = archzoo.load_config("baichuan-13b"), RELEASED["baichuan-13b"]["config"]
    assert cfg.norm.eps == released["rms_norm_eps"]
    assert cfg.model.max_seq_len == released["model_max_length"]
    assert cfg.position.kind == "alibi" and cfg.n_heads == released["num_attention_heads"]


def _released_dense_config_names() -> set[str]:
    names = set()
    for name, path in config_paths().items():
        if path.parent.name in DENSE_FAMILY_DIRS and not name.endswith("-tiny"):
            if archzoo.load_config(path).moe is None:
                names.add(name)
    return names


def test_every_released_dense_config_is_checked_against_its_release():
    assert _released_dense_config_names() == set(RELEASED) | {
        name for name, entry in REMOTE_CODE_ADDED.items() if entry["config"].get("architectures") == ["BaichuanForCausalLM"]
    }


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_config_names_its_source(name):
    cfg = archzoo.load_config(name)
    assert cfg.source.strip() and cfg.description.strip()
    assert RELEASED[name]["repo"] in cfg.source, "source must name the Hugging Face repository"
