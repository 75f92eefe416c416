"""Dense families against ``transformers``: same random weights, same logits.

Each transformers model is built from a small config, its norm gains and
biases are moved away from 1 and 0, it is saved with ``save_pretrained`` and
loaded with ``archzoo.load_pretrained``. Logits must agree within 1e-5
(float32) at every non-padded position of a batch with left padding; then the
archzoo model is saved back and transformers must reproduce its own logits.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import archzoo

TOLERANCE = 1e-5

CASES = {
    "llama-gqa-llama3-rope": (
        "LlamaForCausalLM",
        transformers.LlamaConfig(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8,
            },
        ),
    ),
    "llama-mqa-bias": (
        "LlamaForCausalLM",
        transformers.LlamaConfig(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, attention_bias=True, mlp_bias=True,
        ),
    ),
    "bloom-alibi-6-heads": (
        "BloomForCausalLM",
        transformers.BloomConfig(vocab_size=96, hidden_size=48, n_layer=2, n_head=6),
    ),
    "bloom-12-heads-residual-post-ln": (
        "BloomForCausalLM",
        transformers.BloomConfig(
            vocab_size=96, hidden_size=96, n_layer=2, n_head=12, apply_residual_connection_post_layernorm=True
        ),
    ),
    "qwen2-qkv-bias-tied": (
        "Qwen2ForCausalLM",
        transformers.Qwen2Config(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True, rope_theta=1e6,
        ),
    ),
    "qwen3-qk-norm-head-dim": (
        "Qwen3ForCausalLM",
        transformers.Qwen3Config(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False,
        ),
    ),
}


def _logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(case, hf_folder, padded_batch, tmp_path):
    architecture, hf_config = CASES[case]
    torch.manual_seed(0)
    hf_model = getattr(transformers, architecture)(hf_config)
    folder = hf_folder(hf_model)
    model = archzoo.load_pretrained(folder)
    ids, mask = padded_batch(hf_config.vocab_size)

    expected = _logits(hf_model, ids, mask)
    got = _logits(model, ids, mask)
    real = mask.bool()
    assert (got - expected)[real].abs().max() < TOLERANCE
    assert not torch.isnan(got).any()

    # and back: transformers loads what archzoo writes
    out = archzoo.save_pretrained(model, tmp_path / "ours")
    reloaded = getattr(transformers, architecture).from_pretrained(out)
    assert (_logits(reloaded, ids, mask) - expected)[real].abs().max() < TOLERANCE


def test_sharded_checkpoint_loads(hf_folder, padded_batch):
    architecture, hf_config = CASES["llama-mqa-bias"]
    hf_model = getattr(transformers, architecture)(hf_config)
    folder = hf_folder(hf_model, max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    model = archzoo.load_pretrained(folder)
    ids, mask = padded_batch(hf_config.vocab_size)
    assert (_logits(model, ids, mask) - _logits(hf_model, ids, mask))[mask.bool()].abs().max() < TOLERANCE


def test_configs_survive_the_round_trip(tmp_path):
    """A config built from a TOML file, saved as HF and loaded back, is the same model."""
    for name in ("llama-tiny",):
        model = archzoo.build_model(name)
        folder = archzoo.save_pretrained(model, tmp_path / name)
        back = archzoo.load_pretrained(folder)
        ids = torch.randint(0, model.config.model.vocab_size, (1, 9))
        assert torch.equal(_logits(model, ids, None), _logits(back, ids, None))
