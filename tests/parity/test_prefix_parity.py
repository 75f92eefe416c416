"""P-tuning v2 prefixes against ``peft``'s prefix tuning, both ways, on transformers models.

archzoo's prefix is saved as PEFT's ``prompt_embeddings`` table and loaded by
``peft.PeftModel.from_pretrained``; a PEFT prefix (with its projection MLP) saved
by PEFT loads into archzoo. Logits within 1e-5 (float32) at every real position
of a left-padded batch: the tolerance of the model parity tests, for logits
summed over d_model = 64 terms in different orders (~64 * 1.2e-7 * |logit|).
"""

from __future__ import annotations

import warnings

import peft
import pytest
import torch
import transformers

import archzoo

TOLERANCE = 1e-5

CASES = {
    "llama-gqa": (
        transformers.LlamaForCausalLM,
        transformers.LlamaConfig(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
        ),
    ),
    "qwen2-mqa-bias": (
        transformers.Qwen2ForCausalLM,
        transformers.Qwen2Config(
            vocab_size=96, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1
        ),
    ),
}


def _logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else out


def _hf(case, hf_folder):
    torch.manual_seed(0)
    model_class, config = CASES[case]
    hf_model = model_class(config).eval()
    return hf_model, hf_folder(hf_model)


@pytest.mark.parametrize("case", sorted(CASES))
def test_archzoo_prefix_loads_into_peft(case, hf_folder, padded_batch, tmp_path):
    hf_model, folder = _hf(case, hf_folder)
    model = archzoo.add_prefix(archzoo.load_pretrained(folder), length=5)
    with torch.no_grad():
        model.prefix.embedding.weight.mul_(0.5)
    archzoo.save_adapter(model, tmp_path / "prefix")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = peft.PeftModel.from_pretrained(hf_model, tmp_path / "prefix").eval()
    ids, mask = padded_batch(96)
    got, expected = _logits(model, ids, mask), _logits(peft_model, ids, mask)
    assert (got - expected)[mask.bool()].abs().max() < TOLERANCE
    assert (got - _logits(hf_model, ids, mask))[mask.bool()].abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("case", sorted(CASES))
def test_peft_prefix_with_projection_loads_into_archzoo(case, hf_folder, padded_batch, tmp_path):
    hf_model, folder = _hf(case, hf_folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = peft.get_peft_model(
            hf_model, peft.PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4, prefix_projection=True)
        )
    peft_model.save_pretrained(tmp_path / "prefix")
    peft_model.eval()
    model = archzoo.load_adapter(archzoo.load_pretrained(folder), tmp_path / "prefix")
    ids, mask = padded_batch(96)
    assert (_logits(model, ids, mask) - _logits(peft_model, ids, mask))[mask.bool()].abs().max() < TOLERANCE
