"""BLOOM's residual option (``apply_residual_connection_post_layernorm``) is a wiring of its own,
h = N(x) + F(N(x)), checked by hand on a whole BLOOM layer; no DeepNorm alpha or beta is involved."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import archzoo
from archzoo.blocks.attention import AttentionContext
from archzoo.blocks.masks import build_mask
from archzoo.blocks.residual import FROM_NORMED_KINDS, pre_norm_from_normed, select_wiring
from archzoo.config import ConfigError
from archzoo.config.sections import FROM_NORMED_PLACEMENTS


def test_from_normed_table_matches_the_config_rule():
    assert tuple(FROM_NORMED_KINDS) == FROM_NORMED_PLACEMENTS
    assert select_wiring("pre", True) is pre_norm_from_normed


def bloom_from_normed() -> archzoo.Config:
    cfg = archzoo.load_config("bloom-tiny")
    return cfg.replace(norm=replace(cfg.norm, residual_from_normed=True))


def test_bloom_layer_takes_the_residual_from_the_normalised_input():
    torch.manual_seed(0)
    cfg = bloom_from_normed()
    assert cfg.norm.placement == "pre" and cfg.has_final_norm
    model = archzoo.build_model(cfg, dtype=torch.float64)
    layer = model.layers[0]
    x = torch.randn(2, 5, cfg.model.d_model, dtype=torch.float64)
    bias = model.positions.bias(5, 5, 0).to(x.dtype)
    ctx = AttentionContext(mask=build_mask(5, 0, None, bias=bias))
    a = layer.attn_norm(x)
    h = a + layer.attn(a, ctx)
    b = layer.mlp_norm(h)
    expected = b + layer.mlp(b)
    # the same float64 ops in the same order as the layer: equal to float64 rounding (~1e-16 |x|)
    torch.testing.assert_close(layer(x, ctx), expected, rtol=1e-12, atol=1e-12)
    # and not the plain pre-norm layer (the residual would carry x)
    plain = x + layer.attn(a, ctx)
    assert (layer(x, ctx) - (plain + layer.mlp(layer.mlp_norm(plain)))).abs().max() > 1e-3


def test_no_deepnorm_init_for_bloom_wiring():
    # DeepNorm's beta scales v/o/MLP weights at init; BLOOM's wiring is pre-norm and keeps init_std
    torch.manual_seed(0)
    plain = archzoo.build_model("bloom-tiny")
    torch.manual_seed(0)
    normed = archzoo.build_model(bloom_from_normed())
    for (name, p), (_, q) in zip(plain.named_parameters(), normed.named_parameters()):
        assert torch.equal(p, q), name


@pytest.mark.parametrize("placement", ["post", "sandwich"])
def test_residual_from_normed_needs_pre_or_deepnorm(placement):
    cfg = archzoo.load_config("llama-tiny")
    with pytest.raises(ConfigError, match="residual_from_normed"):
        cfg.replace(norm=replace(cfg.norm, placement=placement, residual_from_normed=True))


@pytest.mark.parametrize("name", ["llama-tiny", "qwen2-tiny", "deepseek-tiny", "chatglm2-tiny", "baichuan-tiny"])
def test_layouts_without_the_option_refuse_it(name, tmp_path):
    # only BLOOM's config.json can say apply_residual_connection_post_layernorm; the others must not
    # silently save a plain pre-norm model
    cfg = archzoo.load_config(name)
    model = archzoo.build_model(cfg.replace(norm=replace(cfg.norm, residual_from_normed=True)), device="meta")
    with pytest.raises(archzoo.ArchzooError, match="norm"):
        archzoo.save_pretrained(model, tmp_path / "out")


def test_bloom_saves_and_reads_the_option(tmp_path):
    torch.manual_seed(0)
    model = archzoo.build_model(bloom_from_normed())
    archzoo.save_pretrained(model, tmp_path / "bloom")
    loaded = archzoo.load_pretrained(tmp_path / "bloom")
    assert loaded.config.norm.residual_from_normed and loaded.config.norm.placement == "pre"
    ids = torch.randint(0, 512, (1, 6))
    with torch.no_grad():
        assert torch.equal(loaded(ids), model(ids))
