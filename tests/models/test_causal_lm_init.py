"""``archzoo.CausalLM(cfg)`` constructed directly is initialised and usable; on ``meta`` it
stays cheap (no init: ``normal_`` on meta costs a one-off import of torch._dynamo)."""

from __future__ import annotations

import torch

import archzoo


def test_direct_construction_equals_build_model():
    cfg = archzoo.load_config("llama-tiny")
    torch.manual_seed(0)
    direct = archzoo.CausalLM(cfg)
    torch.manual_seed(0)
    built = archzoo.build_model(cfg)
    built_state = built.state_dict()
    for name, tensor in direct.state_dict().items():
        assert torch.equal(tensor, built_state[name]), name  # same draws, same order: exactly equal


def test_direct_construction_draws_normal_init_std_weights():
    cfg = archzoo.load_config("llama-tiny")
    model = archzoo.CausalLM(cfg)
    weight = model.embed.weight
    std = cfg.model.init_std
    # n = vocab x d draws of N(0, std^2): the sample std is off by about std / sqrt(2n) (< 1% here),
    # and the largest |value| of n normal draws is about sqrt(2 ln n) std (< 5 std); uninitialised
    # memory (torch.empty) fails both by far.
    assert weight.numel() >= 4096
    assert abs(weight.std().item() - std) < 0.1 * std
    assert weight.abs().max().item() < 8 * std
    ids = torch.randint(0, cfg.model.vocab_size, (1, 5))
    assert torch.isfinite(model(ids)).all()


def test_meta_construction_draws_nothing(monkeypatch):
    # Tensor.normal_ on a meta tensor is what imports torch._dynamo (a one-off ~5 s): no init runs there
    calls = []
    real = torch.Tensor.normal_
    monkeypatch.setattr(torch.Tensor, "normal_", lambda t, *a, **k: calls.append(t.device.type) or real(t, *a, **k))
    with torch.device("meta"):
        model = archzoo.CausalLM(archzoo.load_config("deepseek-v3"))
    assert model.embed.weight.is_meta and model.lm_head.weight.is_meta
    assert calls == []
    archzoo.CausalLM(archzoo.load_config("llama-tiny"))  # the probe sees a real init
    assert calls and "meta" not in calls
