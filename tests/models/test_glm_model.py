"""The GLM network: mask semantics by perturbation on glm-tiny, 2D position ids,
DeepNorm wirings and init against hand computation, embedding gradient shrink."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import tolerances as tol
from archzoo import build_model, load_config
from archzoo.blocks.attention import AttentionContext
from archzoo.blocks.masks import build_mask
from archzoo.blocks.norm import LayerNorm
from archzoo.blocks.residual import deep_norm, deepnorm_from_normed
from archzoo.glm import blank_infilling, prefix_lm_inputs


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("glm-tiny")
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


def sample(cfg):
    g = torch.Generator().manual_seed(5)
    text = torch.randint(10, 400, (16,), generator=g)
    t = cfg.tokens
    return blank_infilling(text, [(7, 10), (2, 4), (12, 13)], mask_id=t.mask_id, sop_id=t.sop_id, eop_id=t.eop_id)


@torch.no_grad()
def test_part_b_token_never_changes_part_a_or_earlier_part_b(tiny):
    cfg, model = tiny
    s = sample(cfg)
    changed = list(range(s.sep, s.input_ids.shape[0]))
    ids = s.input_ids.repeat(len(changed) + 1, 1)  # row 0 untouched, row r + 1 changes token changed[r]
    for row, j in enumerate(changed, start=1):
        ids[row, j] = (ids[row, j] + 17) % 400 + 10
    n = len(ids)
    out = model(ids, position_ids=s.position_ids.expand(n, 2, -1), attention_mask=s.attention_mask.expand(n, -1, -1))
    for row, j in enumerate(changed, start=1):
        assert torch.equal(out[row, :j], out[0, :j]), f"changing Part-B token {j} moved an earlier output"
        assert (out[row, j:] - out[0, j:]).abs().amax(-1).min() > 0, f"token {j} must reach itself and later ones"


@torch.no_grad()
def test_part_a_token_changes_every_output(tiny):
    cfg, model = tiny
    s = sample(cfg)
    changed = (0, 5, s.sep - 1)
    ids = s.input_ids.repeat(len(changed) + 1, 1)
    for row, j in enumerate(changed, start=1):
        ids[row, j] = (ids[row, j] + 17) % 400 + 10
    n = len(ids)
    out = model(ids, position_ids=s.position_ids.expand(n, 2, -1), attention_mask=s.attention_mask.expand(n, -1, -1))
    # row 0 alone or in a batch of n: the same sums, blocked differently; the widest is the 512-wide MLP
    assert torch.allclose(out[0], model(**s.batch())[0], rtol=0, atol=tol.fp32_forward(512, out[0]))
    for row in range(1, n):
        assert (out[row] - out[0]).abs().amax(-1).min() > 0


@torch.no_grad()
def test_prefix_lm_generated_tokens_never_change_the_prompt(tiny):
    cfg, model = tiny
    t = cfg.tokens
    ids = torch.tensor([30, 31, 32, t.gmask_id, t.sop_id, 40, 41, 42])
    p = prefix_lm_inputs(ids, gmask_id=t.gmask_id, mask_id=t.mask_id, sop_id=t.sop_id)
    base = model(ids[None], position_ids=p.position_ids[None], attention_mask=p.attention_mask[None])
    changed = ids.clone()
    changed[6] = 99
    out = model(changed[None], position_ids=p.position_ids[None], attention_mask=p.attention_mask[None])
    assert torch.equal(out[:, :6], base[:, :6])
    changed = ids.clone()
    changed[3 - 1] = 99  # a prompt token reaches every slot, earlier ones too (bidirectional)
    out = model(changed[None], position_ids=p.position_ids[None], attention_mask=p.attention_mask[None])
    assert (out[0] - base[0]).abs().amax(-1).min() > 0


@torch.no_grad()
def test_position_id_forms():
    cfg = load_config("glm-tiny")
    cfg = cfg.replace(model=replace(cfg.model, init_std=0.2))  # sharp attention: positions show in the logits
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    ids = torch.randint(10, 400, (2, 6))
    pos = torch.arange(6).expand(2, 6)
    flat = model(ids, position_ids=pos)
    two = model(ids, position_ids=torch.stack([pos, torch.zeros_like(pos)], 1))
    default = model(ids)
    assert torch.equal(flat, two) and torch.equal(flat, default)
    # only differences of block positions matter (RoPE is relative): a constant shift changes nothing
    shifted = torch.stack([pos, torch.full_like(pos, 3)], 1)
    assert (model(ids, position_ids=shifted) - flat).abs().max() < 1e-4
    rising = torch.stack([pos, pos], 1)
    assert (model(ids, position_ids=rising) - flat).abs().max() > 0.1


# ---- DeepNorm ----------------------------------------------------------------------------


def hand_layernorm(x: torch.Tensor, norm: LayerNorm) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def random_layernorm(dim: int) -> LayerNorm:
    norm = LayerNorm(dim, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm


def test_deepnorm_wirings_by_hand():
    torch.manual_seed(2)
    x = torch.randn(3, 8) * 3
    norm = random_layernorm(8)
    w = torch.randn(8, 8)
    f = lambda h: torch.tanh(h @ w)
    alpha = 2.5
    expected = hand_layernorm(alpha * x + f(x), norm)  # DeepNet: N(alpha x + F(x))
    # float32 both: two 8-term LayerNorm statistics and an 8-term matmul each side, outputs |y| <= ~3
    assert torch.allclose(deep_norm(x, f, norm, None, alpha), expected, rtol=0, atol=tol.fp32_sum(4 * 8, 3.0))
    a = hand_layernorm(x, norm)  # ChatGLM-6B: a = N(x); alpha a + F(a)
    # as above; alpha a is up to 2.5 x 3 = 7.5
    assert torch.allclose(deepnorm_from_normed(x, f, norm, None, alpha), alpha * a + f(a), rtol=0, atol=tol.fp32_sum(4 * 8, 7.5))


@torch.no_grad()
def test_chatglm6b_layer_by_hand(tiny):
    cfg, model = tiny
    layer = model.layers[0]
    for norm in (layer.attn_norm, layer.mlp_norm):
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(1, 5, cfg.model.d_model)
    ctx = AttentionContext(mask=build_mask(5, 0, None), rotation=model.positions(torch.arange(5)[None]))
    alpha = math.sqrt(56)
    a = hand_layernorm(x, layer.attn_norm)
    h = alpha * a + layer.attn(a, ctx)
    m = hand_layernorm(h, layer.mlp_norm)
    up = m @ layer.mlp.up_proj.weight.T + layer.mlp.up_proj.bias
    gelu = 0.5 * up * (1 + torch.tanh(0.7978845608 * (up + 0.044715 * up**3)))
    y = alpha * m + gelu @ layer.mlp.down_proj.weight.T + layer.mlp.down_proj.bias
    # the layer against its equation in float32: sums of up to 512 terms (the MLP's hidden width)
    assert torch.allclose(layer(x, ctx), y, rtol=0, atol=tol.fp32_forward(512, y))
    assert model.embed_norm is None and model.final_norm is not None  # the final LN is the last post-LN


def test_alpha_is_fixed_for_chatglm_and_the_rule_otherwise():
    assert load_config("chatglm-6b").deepnorm_alpha == pytest.approx(math.sqrt(56))
    tiny = load_config("glm-tiny")
    assert tiny.model.n_layers == 2 and tiny.deepnorm_alpha == pytest.approx(math.sqrt(56))
    rule = tiny.replace(norm=replace(tiny.norm, deepnorm_alpha=None), model=replace(tiny.model, n_layers=3))
    assert rule.deepnorm_alpha == pytest.approx(math.sqrt(6))  # (2N)^0.5
    assert rule.deepnorm_beta == pytest.approx(6**-0.5)  # (2N)^-0.5
    plain = tiny.replace(norm=replace(tiny.norm, residual_from_normed=False))
    assert not plain.has_final_norm  # N(alpha x + F(x)) already ends normalised


def test_deepnorm_init_scales_value_output_and_mlp_weights_by_beta():
    cfg = load_config("glm-tiny")
    models = {}
    for beta in (1.0, 0.25):
        torch.manual_seed(3)
        models[beta] = build_model(cfg.replace(norm=replace(cfg.norm, deepnorm_beta=beta)))
    one, quarter = (dict(models[b].named_parameters()) for b in (1.0, 0.25))
    for name, p in one.items():
        scaled = p.dim() >= 2 and any(k in name for k in ("v_proj.weight", "o_proj.weight", "mlp."))
        assert torch.equal(quarter[name], p * 0.25 if scaled else p), name
    assert any("mlp.up_proj" in n for n in one) and any("q_proj.weight" in n for n in one)


# ---- embedding gradient shrink --------------------------------------------------------------


def test_embedding_gradient_shrink():
    """Exact by construction (as test_decoder.py::test_embedding_grad_scale): a power-of-two scale
    (GLM-130B uses 0.1) commutes with the embedding backward's sums, and every other gradient
    comes from the same numbers through the same kernels, so the comparisons are ``torch.equal``."""
    cfg = load_config("glm-tiny")
    shrunk_cfg = cfg.replace(model=replace(cfg.model, embedding_grad_scale=0.125))
    torch.manual_seed(4)
    plain = build_model(cfg)
    shrunk = build_model(shrunk_cfg)
    shrunk.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 500, (2, 7))
    target = torch.randint(0, 500, (2, 7))
    outs = []
    for model in (plain, shrunk):
        logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1), target.flatten()).backward()
        outs.append(logits.detach())
    assert torch.equal(outs[0], outs[1])  # forward unchanged
    with torch.no_grad():
        assert torch.equal(plain(ids), shrunk(ids))
    assert plain.embed.weight.grad.abs().sum() > 0
    assert torch.equal(shrunk.embed.weight.grad, 0.125 * plain.embed.weight.grad)
    assert torch.equal(shrunk.lm_head.weight.grad, plain.lm_head.weight.grad)
