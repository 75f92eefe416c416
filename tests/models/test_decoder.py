"""The decoder assembly: build options, meta-device builds, tied heads, output options, GLM's
embedding gradient shrink, and the residual wirings written out by hand."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import tolerances as tol
from archzoo import Config, build_model, load_config
from archzoo.blocks.attention import AttentionContext
from archzoo.blocks.masks import build_mask
from archzoo.blocks.norm import LayerNorm, RMSNorm
from archzoo.blocks.residual import (
    RESIDUAL_KINDS,
    deep_norm,
    deepnorm_from_normed,
    post_norm,
    pre_norm,
    sandwich_norm,
    select_wiring,
)
from archzoo.models.decoder import CausalLMOutput


def tiny(**norm_fields) -> Config:
    """llama-tiny in float64-friendly form, with the [norm] section changed."""
    data = load_config("llama-tiny").to_dict()
    data["norm"] = {**data.get("norm", {}), **norm_fields}
    return Config.from_dict(data)


# ---- build options ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_build_with_dtype_and_device(dtype):
    torch.manual_seed(0)
    model = build_model("llama-tiny", device="cpu", dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {dtype}
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    logits = model(torch.randint(0, 512, (1, 6)))
    assert logits.dtype == dtype and torch.isfinite(logits).all()


def test_float64_model_agrees_with_float32_model():
    torch.manual_seed(1)
    fp32 = build_model("llama-tiny")
    fp64 = build_model("llama-tiny", dtype=torch.float64)
    fp64.load_state_dict(fp32.state_dict())
    ids = torch.randint(0, 512, (2, 7))
    # float32 rounds each of the forward's sums (at most n = 512 terms: the vocab-wide softmax is not
    # in it; d_model, hidden and 7 kv slots are narrower) to eps_32 = 1.2e-7: worst case n eps |x|,
    # so 512 eps_32 max |logit| bounds it; a real error is of the size of |x|.
    expected = fp64(ids)
    bound = 512 * torch.finfo(torch.float32).eps * max(1.0, expected.abs().max().item())
    torch.testing.assert_close(fp32(ids).double(), expected, rtol=0, atol=bound)


def test_casting_keeps_rope_frequencies_exact():
    """A bfloat16 model rotates by the float32 angles: rounding omega to 8 bits would move the
    angle at position 255 by up to ~0.5 rad."""
    positions = torch.arange(256)[None]
    fp32 = build_model("llama-tiny").positions(positions, torch.float32)
    bf16 = build_model("llama-tiny", dtype=torch.bfloat16).positions(positions, torch.float32)
    assert torch.equal(bf16.cos, fp32.cos) and torch.equal(bf16.sin, fp32.sin)


def llama_7b() -> Config:
    """LLaMA-7B (Touvron et al. 2023, Table 2), written here rather than read from configs/."""
    return Config.from_dict(
        {
            "name": "llama-7b-sized",
            "family": "llama",
            "model": {"vocab_size": 32000, "d_model": 4096, "n_layers": 32, "max_seq_len": 2048},
            "norm": {"kind": "rmsnorm", "eps": 1e-6},
            "attention": {"n_heads": 32},
            "mlp": {"kind": "swiglu", "hidden": 11008},
        }
    )


def test_meta_build_allocates_nothing():
    model = build_model(llama_7b(), device="meta")
    params = list(model.parameters())
    assert all(p.device.type == "meta" for p in params)
    assert all(b.device.type == "meta" for b in model.buffers())
    # the released LLaMA-7B checkpoint holds 6,738,415,616 parameters
    assert sum(p.numel() for p in params) == 6_738_415_616


def test_meta_build_with_dtype():
    model = build_model(llama_7b(), device="meta", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert all(p.is_meta for p in model.parameters())


# ---- head, outputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_tied_embeddings_share_storage(dtype):
    model = build_model("bloom-tiny", dtype=dtype)
    assert model.lm_head.weight is model.embed.weight
    assert model.lm_head.weight.data_ptr() == model.embed.weight.data_ptr()
    names = [name for name, _ in model.named_parameters()]
    assert "embed.weight" in names and "lm_head.weight" not in names  # counted once
    with torch.no_grad():
        model.embed.weight[3, 0] = 42.0
    assert model.lm_head.weight[3, 0].item() == 42.0


def test_untied_head_is_its_own_matrix():
    model = build_model("llama-tiny")
    assert model.lm_head.weight.data_ptr() != model.embed.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.embed.weight)


@torch.no_grad()
@pytest.mark.parametrize("keep", [1, 3])
def test_logits_to_keep(keep):
    torch.manual_seed(2)
    model = build_model("llama-tiny")
    ids = torch.randint(0, 512, (2, 8))
    full = model(ids)
    kept = model(ids, logits_to_keep=keep)
    assert kept.shape == (2, keep, 512)
    # the same rows through the same ops; only the head's matmul over d_model = 64 terms may be blocked
    # differently for fewer rows: worst case 64 eps_32 max |logit|
    bound = 64 * torch.finfo(torch.float32).eps * full.abs().max().item()
    torch.testing.assert_close(kept, full[:, -keep:], rtol=0, atol=bound)
    assert model(ids, logits_to_keep=0).shape == full.shape


@torch.no_grad()
def test_return_dict():
    torch.manual_seed(3)
    model = build_model("llama-tiny")
    ids = torch.randint(0, 512, (2, 5))
    out = model(ids, return_dict=True)
    assert isinstance(out, CausalLMOutput)
    assert torch.equal(out.logits, model(ids))
    assert out.aux_loss is None and out.expert_loads == []


# ---- GLM-130B embedding gradient shrink -------------------------------------------------------


def test_embedding_grad_scale():
    """Forward values bit-identical; the embedding gradient is `scale` times the plain one,
    every other gradient unchanged (GLM-130B, Zeng et al. 2022, section 3).

    Exact by construction: the scale is a power of two (GLM uses 0.1; the mechanism is the
    same), so scaling each token's gradient before the embedding's backward sums them is
    exact, and equals scaling the sum exactly; every other gradient comes from the same
    upstream numbers through the same kernels. So the comparisons are ``torch.equal``."""
    torch.manual_seed(4)
    base = load_config("llama-tiny")
    scaled_cfg = base.replace(model=dataclasses.replace(base.model, embedding_grad_scale=0.125))
    plain, scaled = build_model(base), build_model(scaled_cfg)
    scaled.load_state_dict(plain.state_dict())
    ids = torch.tensor([[3, 7, 3, 9, 11, 7], [5, 3, 8, 8, 2, 1]])  # repeated tokens: their gradients add up
    weights = torch.randn(2, 6, 512)
    outputs = {}
    for name, model in (("plain", plain), ("scaled", scaled)):
        logits = model(ids)
        (logits * weights).sum().backward()
        outputs[name] = logits.detach()
    assert torch.equal(outputs["plain"], outputs["scaled"])
    assert torch.equal(scaled.embed.weight.grad, 0.125 * plain.embed.weight.grad)
    assert plain.embed.weight.grad.abs().max() > 0
    for (name, p), (_, q) in zip(plain.named_parameters(), scaled.named_parameters()):
        if name != "embed.weight":
            assert torch.equal(q.grad, p.grad), name
    with torch.no_grad():
        assert torch.equal(scaled(ids), plain(ids))


# ---- residual wirings, by hand ----------------------------------------------------------------


def layernorm_by_hand(x: torch.Tensor, norm: LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


@pytest.fixture
def parts():
    torch.manual_seed(5)
    norm, post = LayerNorm(8).double(), LayerNorm(8).double()
    with torch.no_grad():
        for p in (*norm.parameters(), *post.parameters()):
            p.copy_(torch.randn_like(p))
    x = torch.randn(3, 8, dtype=torch.float64)
    return x, norm, post


# float64 wirings against float64 by-hand ones: 8-wide LayerNorms (two 8-term sums) of values |x| <= ~10
WIRING_TOL = tol.fp64_sum(4 * 8, 10.0)


def f(h: torch.Tensor) -> torch.Tensor:
    """A simple nonlinear sublayer."""
    return torch.tanh(2 * h) + 0.5


def test_pre_norm_wiring(parts):
    x, norm, post = parts
    expected = x + f(layernorm_by_hand(x, norm))
    torch.testing.assert_close(pre_norm(x, f, norm, None, 1.0), expected, rtol=0, atol=WIRING_TOL)


def test_post_norm_wiring(parts):
    x, norm, post = parts
    expected = layernorm_by_hand(x + f(x), norm)
    torch.testing.assert_close(post_norm(x, f, norm, None, 1.0), expected, rtol=0, atol=WIRING_TOL)


def test_deepnorm_wiring(parts):
    x, norm, post = parts
    alpha = 2.5
    expected = layernorm_by_hand(alpha * x + f(x), norm)
    torch.testing.assert_close(deep_norm(x, f, norm, None, alpha), expected, rtol=0, atol=WIRING_TOL)


def test_deepnorm_from_normed_wiring(parts):
    x, norm, post = parts
    alpha = 2.5
    a = layernorm_by_hand(x, norm)
    expected = alpha * a + f(a)
    torch.testing.assert_close(deepnorm_from_normed(x, f, norm, None, alpha), expected, rtol=0, atol=WIRING_TOL)


def test_sandwich_wiring(parts):
    x, norm, post = parts
    expected = x + layernorm_by_hand(f(layernorm_by_hand(x, norm)), post)
    torch.testing.assert_close(sandwich_norm(x, f, norm, post, 1.0), expected, rtol=0, atol=WIRING_TOL)


def test_select_wiring():
    for placement, wiring in RESIDUAL_KINDS.items():
        assert select_wiring(placement, False) is wiring
    assert select_wiring("deepnorm", True) is deepnorm_from_normed


@pytest.mark.parametrize(
    ("placement", "from_normed"),
    [("pre", False), ("post", False), ("deepnorm", False), ("deepnorm", True), ("sandwich", False)],
)
def test_decoder_layer_wiring(placement, from_normed):
    """A whole layer: attention sublayer then MLP sublayer, each wired by the placement's equation."""
    torch.manual_seed(6)
    fields = {"placement": placement}
    if from_normed:
        fields["residual_from_normed"] = True
    cfg = tiny(**fields)
    model = build_model(cfg, dtype=torch.float64)
    layer = model.layers[0]
    for norm in (layer.attn_norm, layer.mlp_norm, layer.attn_post_norm, layer.mlp_post_norm):
        if norm is not None:
            with torch.no_grad():
                norm.weight.copy_(1 + 0.3 * torch.randn_like(norm.weight))
    x = torch.randn(2, 5, 128, dtype=torch.float64)
    ctx = AttentionContext(mask=build_mask(5, 0, None), rotation=model.positions(torch.arange(5)[None], x.dtype))
    attn, mlp = (lambda h: layer.attn(h, ctx)), layer.mlp
    n1, n2, p1, p2 = layer.attn_norm, layer.mlp_norm, layer.attn_post_norm, layer.mlp_post_norm
    alpha = math.sqrt(2 * cfg.model.n_layers)  # GLM-130B's default (2N)^0.5
    assert layer.alpha == pytest.approx(alpha)
    if placement == "pre":
        h = x + attn(n1(x))
        expected = h + mlp(n2(h))
    elif placement == "post":
        h = n1(x + attn(x))
        expected = n2(h + mlp(h))
    elif placement == "sandwich":
        h = x + p1(attn(n1(x)))
        expected = h + p2(mlp(n2(h)))
    elif from_normed:
        a = n1(x)
        h = alpha * a + attn(a)
        b = n2(h)
        expected = alpha * b + mlp(b)
    else:
        h = n1(alpha * x + attn(x))
        expected = n2(alpha * h + mlp(h))
    # float64, the layer's own modules both sides, composed in another order: 128-term sums of values <= ~10
    torch.testing.assert_close(layer(x, ctx), expected, rtol=0, atol=tol.fp64_sum(4 * 128, 10.0))
    assert (model.final_norm is not None) == (placement in ("pre", "sandwich") or from_normed)


def test_deepnorm_init_scales_value_output_and_mlp_by_beta():
    """DeepNet (Wang et al. 2022): W_v, W_o and the FFN weights start scaled by beta; W_q, W_k do not."""
    torch.manual_seed(7)
    pre = build_model(tiny(placement="pre"))
    torch.manual_seed(7)
    deep = build_model(tiny(placement="deepnorm"))
    beta = (2 * 2) ** -0.5
    p, d = dict(pre.named_parameters()), dict(deep.named_parameters())
    for name, weight in d.items():
        if weight.dim() < 2 or name.startswith(("embed", "lm_head")):
            continue
        scaled = any(part in name for part in ("v_proj", "o_proj", "mlp."))
        expected = p[name] * beta if scaled else p[name]
        assert torch.equal(weight, expected), name  # the same seeded draw, times beta: one float32 product each
    assert any("q_proj" in n for n in d) and any("gate_proj" in n for n in d)


def test_layer_norms_are_the_configured_kind():
    model = build_model(tiny(kind="layernorm", placement="post"))
    assert isinstance(model.layers[0].attn_norm, LayerNorm)
    assert isinstance(build_model("llama-tiny").layers[0].attn_norm, RMSNorm)
    assert all(not isinstance(m, nn.LayerNorm) for m in build_model("llama-tiny").modules())
