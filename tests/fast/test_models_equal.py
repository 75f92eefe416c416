"""fast == reference end to end: every tiny config, full logits and cached decoding.

Tolerance. Every fast form computes the same products and sums as its
reference block and differs only in rounding: a reordered or fused float32
sum of n terms moves a result by about n * eps_32 * |x| (eps_32 = 1.2e-7),
and these models' widest sums are n <= 128 (d_model, hidden, kv slots) over
values |x| <= a few units, in 2 layers. Measured on this project's CPUs, the
largest logit difference over all tiny configs is about 6e-7 for logits of
size about 1; so ``max |fast - ref| <= 1e-6 * max(1, max |ref|)`` holds with
margin, and a form that computed anything else (a wrong sign, a dropped
term, a stale table) misses it by orders of magnitude.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

import archzoo
from archzoo.config import config_paths
from archzoo.fast import decoding_layout, use_implementation

TINY = sorted(name for name in config_paths() if name.endswith("-tiny"))


def assert_equal_to_float_rounding(fast: torch.Tensor, reference: torch.Tensor) -> None:
    scale = max(1.0, reference.abs().max().item())
    assert (fast - reference).abs().max().item() <= 1e-6 * scale


def pair(name: str):
    torch.manual_seed(0)
    reference = archzoo.build_model(name, implementation="reference").eval()
    torch.manual_seed(0)
    fast = archzoo.build_model(name, implementation="fast").eval()
    return reference, fast


@pytest.mark.parametrize("name", TINY)
def test_logits_with_and_without_padding(name):
    reference, fast = pair(name)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), fast.state_dict().values()))
    ids = torch.randint(0, reference.config.model.vocab_size, (2, 11), generator=torch.Generator().manual_seed(1))
    padding = torch.ones(2, 11, dtype=torch.long)
    padding[1, :4] = 0
    with torch.no_grad():
        assert_equal_to_float_rounding(fast(ids), reference(ids))
        assert_equal_to_float_rounding(fast(ids, padding), reference(ids, padding))


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("layout", ["plain", "decoding layout"])
def test_cached_decoding(name, layout):
    """Prefill 6 tokens, then 6 single-token steps over the KV cache: logits of every step; with
    generate's decoding layout the batch-2 steps read the column-major weight copies (fast/linear.py)."""
    reference, fast = pair(name)
    ids = torch.randint(0, reference.config.model.vocab_size, (2, 12), generator=torch.Generator().manual_seed(2))
    caches = reference.new_cache(12), fast.new_cache(12)
    with torch.inference_mode(), decoding_layout(fast) if layout != "plain" else contextlib.nullcontext():
        steps = [ids[:, :6]] + [ids[:, t : t + 1] for t in range(6, 12)]
        for chunk in steps:
            assert_equal_to_float_rounding(fast(chunk, cache=caches[1]), reference(chunk, cache=caches[0]))
    assert any("column_major" in m.__dict__ for m in fast.modules()) == (layout != "plain")


@pytest.mark.parametrize("name", ["llama-tiny", "bloom-tiny", "deepseek-v2-tiny", "qwen3-moe-tiny"])
def test_generate_gives_the_same_tokens(name):
    reference, fast = pair(name)
    prompt = torch.randint(1, 200, (1, 5), generator=torch.Generator().manual_seed(3))
    assert torch.equal(archzoo.generate(fast, prompt, 12), archzoo.generate(reference, prompt, 12))


def test_training_step_gives_the_same_gradients():
    reference, fast = pair("deepseek-tiny")
    reference.train(), fast.train()
    ids = torch.randint(0, 256, (2, 9), generator=torch.Generator().manual_seed(4))
    for model in (reference, fast):
        model(ids).logsumexp(-1).mean().backward()
    for (name, a), b in zip(reference.named_parameters(), fast.parameters()):
        scale = max(1.0, a.grad.abs().max().item())
        assert (a.grad - b.grad).abs().max().item() <= 1e-6 * scale, name


def test_switching_back_and_forth_keeps_the_weights():
    torch.manual_seed(0)
    model = archzoo.build_model("deepseek-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 256, (1, 7))
    with torch.no_grad():
        fast_logits = model(ids)
        use_implementation(model, "reference")
        assert model.implementation == "reference"
        assert not any(type(m).__module__.startswith("archzoo.fast") for m in model.modules())
        reference_logits = model(ids)
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert_equal_to_float_rounding(fast_logits, reference_logits)
