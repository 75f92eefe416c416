"""``fast/attention.py``: float32 SDPA for training under CPU bfloat16 autocast, against exact attention.

The fast form is ``bf16(attention_f32(q, k, v))``, so it is compared with attention computed in float64
from the same bfloat16 inputs: each output and gradient is at most one bfloat16 rounding (2^-8
relative) away from a float32 result, which is itself within the float32 sum bound of exact
(``tolerances.sum_error``, with the sums' terms measured here).
"""

from __future__ import annotations

import pytest
import torch

import tolerances as tol
from archzoo.blocks.attention import Attention, AttentionContext
from archzoo.fast import use_implementation
from archzoo.fast.attention import FastAttention

ROUNDING_BF16 = 2.0**-8  # one rounding to bfloat16, relative


def block(n_heads: int, n_kv_heads: int, head_dim: int = 16) -> Attention:
    return Attention(n_heads * head_dim, n_heads, n_kv_heads, head_dim)


def inputs(batch: int, n_heads: int, n_kv_heads: int, seq: int, head_dim: int, alibi: bool):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (
        (2 * torch.randn(batch, heads, seq, head_dim, generator=generator)).bfloat16().requires_grad_()
        for heads in (n_heads, n_kv_heads, n_kv_heads)
    )
    causal = torch.ones(seq, seq, dtype=torch.bool).tril()
    if alibi:  # a float mask, as ALiBi models pass: -inf above the diagonal, a slope times the distance below
        distance = torch.arange(seq)[None, :] - torch.arange(seq)[:, None]
        slopes = 2.0 ** -torch.arange(1, n_heads + 1, dtype=torch.float32)
        mask = torch.where(causal, slopes[:, None, None] * distance, -torch.inf)[None]
    else:
        mask = causal
    upstream = torch.randn(batch, n_heads, seq, head_dim, generator=generator).bfloat16()
    return q, k, v, mask, upstream


def exact_attention(q, k, v, mask, scale):
    """softmax(q k^T s + B) v in float64, kv heads shared by H / G query heads; also the pieces the bounds need."""
    groups = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    bias = torch.zeros(mask.shape, dtype=torch.float64).masked_fill(~mask, -torch.inf) if mask.dtype == torch.bool else mask.double()
    p = torch.softmax(q @ k.transpose(-1, -2) * scale + bias, dim=-1)
    return p @ v, p, k, v


def exact_with_float32_bounds(q, k, v, mask, upstream, scale):
    """Exact attention of q, k, v (float64) and its gradients for ``upstream``, with how far a float32
    evaluation may be from each: (output, [dq, dk, dv], output bound, [dq, dk, dv] bounds)."""
    n_heads, seq, head_dim = q.shape[1], q.shape[2], q.shape[3]
    n_kv_heads = k.shape[1]
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    expected, p, k_all, v_all = exact_attention(*leaves, mask, scale)
    expected.backward(upstream.double())
    s = scale
    # float32 scores: head_dim terms of size |q||k| s; a score error e moves each probability by about e
    # relative, so the output by e max|v|; then seq terms of size p |v| in the weighted sum
    score_error = tol.fp32_sum(head_dim, q.double().abs().amax().item() * k.double().abs().amax().item() * s * head_dim)
    v_max = v.double().abs().amax().item()
    out_bound = tol.chain(score_error * v_max, tol.fp32_sum(seq, v_max))
    # the backward in float32: dP = g V^T (head_dim terms), dS = P (dP - rowsum(g o)), dq = s dS K,
    # dk = s dS^T q, dv = P^T g (seq terms); the bound takes each sum's terms' magnitudes
    g = upstream.double()
    dp_terms = g.abs() @ v_all.abs().transpose(-1, -2)
    ds_terms = p * (dp_terms + (g * expected.detach()).abs().sum(-1, keepdim=True))
    dp_error = tol.fp32_sum(head_dim) * dp_terms.amax().item() + score_error * ds_terms.amax().item()
    n_terms = seq * (n_heads // n_kv_heads)  # dk and dv sum over the query heads sharing a kv head too
    grad_bounds = [
        s * (tol.fp32_sum(seq, (ds_terms @ k_all.abs()).amax().item()) + dp_error * seq * k_all.abs().amax().item()),
        s * (tol.fp32_sum(n_terms, (ds_terms.transpose(-1, -2) @ q.double().abs()).amax().item() * n_kv_heads)
             + dp_error * n_terms * q.double().abs().amax().item()),
        tol.fp32_sum(n_terms, (p.transpose(-1, -2) @ g.abs()).amax().item()) + score_error * n_terms * g.abs().amax().item(),
    ]
    return expected.detach(), [leaf.grad for leaf in leaves], out_bound, grad_bounds


@pytest.mark.parametrize("n_heads,n_kv_heads,alibi", [(4, 4, False), (4, 2, False), (4, 1, True)])
def test_float32_attention_under_bf16_autocast_is_exact_attention_rounded_once(n_heads, n_kv_heads, alibi):
    batch, seq, head_dim = 2, 24, 16
    attention = block(n_heads, n_kv_heads, head_dim)
    attention.__class__ = FastAttention
    q, k, v, mask, upstream = inputs(batch, n_heads, n_kv_heads, seq, head_dim, alibi)
    ctx = AttentionContext(mask=mask, causal=not alibi)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attention.attend(q, k, v, ctx)
    assert out.dtype == torch.bfloat16
    out.backward(upstream)
    expected, exact_grads, out_bound, grad_bounds = exact_with_float32_bounds(q, k, v, mask, upstream, attention.scale)
    torch.testing.assert_close(out.double(), expected, rtol=ROUNDING_BF16, atol=out_bound)
    for name, got, exact, bound in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), exact_grads, grad_bounds):
        assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.double(), exact, rtol=ROUNDING_BF16, atol=bound, msg=name)


@pytest.mark.parametrize("n_heads,n_kv_heads,seq", [(4, 4, 24), (4, 2, 37), (8, 1, 300)])
@pytest.mark.parametrize("implementation", ["reference", "fast"])
def test_sdpas_own_causal_mask_is_exact_causal_attention(n_heads, n_kv_heads, seq, implementation, monkeypatch):
    """float32: the fast form passes ``is_causal=True`` where ctx's mask is the plain causal one (SDPA's
    kernel then skips the blocks above the diagonal); both forms are exact attention to float32's sum bounds."""
    import torch.nn.functional as F

    attention = block(n_heads, n_kv_heads)
    if implementation == "fast":
        attention.__class__ = FastAttention
    q, k, v, mask, upstream = inputs(2, n_heads, n_kv_heads, seq, 16, alibi=False)
    q, k, v = (t.detach().float().requires_grad_() for t in (q, k, v))
    upstream = upstream.float()
    sdpa, calls = F.scaled_dot_product_attention, []
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(kw) or sdpa(*a, **kw))
    out = attention.attend(q, k, v, AttentionContext(mask=mask, causal=True))
    out.backward(upstream)
    assert [call.get("is_causal", False) for call in calls] == [implementation == "fast"]
    assert (calls[0].get("attn_mask") is None) == (implementation == "fast")
    expected, exact_grads, out_bound, grad_bounds = exact_with_float32_bounds(q, k, v, mask, upstream, attention.scale)
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=out_bound)
    for name, got, exact, bound in zip(("dq", "dk", "dv"), (q.grad, k.grad, v.grad), exact_grads, grad_bounds):
        torch.testing.assert_close(got.double(), exact, rtol=0, atol=bound, msg=name)


def test_it_stays_within_bfloat16_roundings_of_the_reference():
    """Both are convex combinations of v's rows: the reference rounds each probability (2^-8 relative) and
    its output, the fast form only its output, so they differ by at most 3 x 2^-8 max|v|."""
    attention = block(4, 2)
    q, k, v, mask, _ = inputs(2, 4, 2, 24, 16, alibi=False)
    ctx = AttentionContext(mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = attention.attend(q, k, v, ctx)
        attention.__class__ = FastAttention
        fast = attention.attend(q, k, v, ctx)
    assert (fast.double() - reference.double()).abs().max() <= 3 * ROUNDING_BF16 * v.double().abs().max()


@pytest.mark.parametrize("case", ["no grad", "inputs without grad", "no autocast", "bfloat16 model, no autocast"])
def test_the_reference_runs_where_float32_does_not_pay(case):
    """Forward only (evaluation, decoding) and float32 or pure-bfloat16 training run the reference, bit for bit."""
    attention = block(4, 2)
    q, k, v, mask, _ = inputs(1, 4, 2, 8, 16, alibi=False)
    ctx = AttentionContext(mask=mask)
    if case == "inputs without grad":
        q, k, v = q.detach(), k.detach(), v.detach()
    if case == "no autocast":
        q, k, v = q.float(), k.float(), v.float()
    fast = FastAttention.__new__(FastAttention)
    fast.__dict__ = attention.__dict__
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case in ("no grad", "inputs without grad")):
        with torch.set_grad_enabled(case != "no grad"):
            got, expected = fast.attend(q, k, v, ctx), attention.attend(q, k, v, ctx)
    assert got.dtype == expected.dtype and torch.equal(got, expected)


@pytest.mark.parametrize("name,mla_mode", [("llama-tiny", None), ("deepseek-v2-tiny", "absorbed"), ("deepseek-v2-tiny", "naive")])
def test_a_bf16_autocast_training_step_matches_float32_as_closely_as_the_reference(name, mla_mode, monkeypatch):
    """A whole model: the loss and gradients under bf16 autocast, fast attention against the reference,
    both against the float32 step (for multi-head latent attention in both modes: ``fast/mla.py`` runs
    the same float32 SDPA). Autocast rounds every matmul input to bfloat16, so both sit about 2^-8
    relative from float32; the fast form, with fewer roundings, no further off (with a margin of 2^-8
    of each gradient's largest entry for where the two happen to round the other way)."""
    import torch.nn.functional as F

    import archzoo
    from archzoo.blocks.mla import set_mla_mode

    torch.manual_seed(0)
    data = archzoo.load_config(name).to_dict()
    data.pop("moe", None)  # top-k routing is discontinuous: a rounding that flips one token's expert is no error bound
    model = archzoo.build_model(archzoo.Config.from_dict(data)).train()
    if mla_mode is not None:
        set_mla_mode(model, mla_mode)
    ids = torch.randint(0, model.config.model.vocab_size, (2, 33), generator=torch.Generator().manual_seed(1))
    sdpa, sdpa_dtypes = F.scaled_dot_product_attention, []

    def spy(q, k, v, *args, **kwargs):  # what reaches SDPA: float32 inputs outside autocast, or autocast's choice
        float32 = all(t.dtype == torch.float32 for t in (q, k, v)) and not torch.is_autocast_enabled("cpu")
        sdpa_dtypes.append(torch.float32 if float32 else torch.get_autocast_dtype("cpu"))
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    grads = {}
    for label, implementation, autocast in (("fp32", "reference", False), ("ref", "reference", True), ("fast", "fast", True)):
        use_implementation(model, implementation)
        model.zero_grad()
        sdpa_dtypes.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(ids[:, :-1], targets=ids[:, 1:])
        loss.backward()
        grads[label] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
        assert len(sdpa_dtypes) == model.config.model.n_layers
        assert set(sdpa_dtypes) == {torch.bfloat16 if label == "ref" else torch.float32}, label
    assert type(model.layers[0].attn).__name__.startswith("Fast")
    exact_loss, exact = grads["fp32"]
    for label in ("ref", "fast"):
        assert abs(grads[label][0] - exact_loss) <= 4 * ROUNDING_BF16 * exact_loss
    for g_exact, g_ref, g_fast in zip(exact, grads["ref"][1], grads["fast"][1]):
        largest = g_exact.abs().max()
        assert (g_fast - g_exact).abs().max() <= (g_ref - g_exact).abs().max() + ROUNDING_BF16 * largest


def sdpa_masks(model, monkeypatch, *calls) -> list[str]:
    """Which mask each SDPA call of running ``calls`` on ``model`` got: "causal" (``is_causal=True``) or "matrix"."""
    import torch.nn.functional as F

    sdpa, seen = F.scaled_dot_product_attention, []

    def spy(*args, **kwargs):
        seen.append("causal" if kwargs.get("is_causal") else "matrix" if kwargs.get("attn_mask") is not None else "none")
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        for call in calls:
            call()
    return seen


@pytest.mark.parametrize("name", ["llama-tiny", "qwen3-tiny", "deepseek-v2-tiny", "bloom-tiny", "chatglm2-tiny"])
def test_sdpa_makes_the_causal_mask_only_where_it_is_the_plain_one(name, monkeypatch):
    """No padding, no cache or prefix before the queries, no ALiBi bias: ``is_causal``; anything else keeps
    the matrix (a decoding step's one query sees the whole cache, which SDPA's top-left triangle would not)."""
    import archzoo

    torch.manual_seed(0)
    model = archzoo.build_model(name).eval()
    layers, alibi = model.config.model.n_layers, name.startswith("bloom")
    ids = torch.randint(1, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    plain = "matrix" if alibi else "causal"
    assert sdpa_masks(model, monkeypatch, lambda: model(ids)) == [plain] * layers
    padding = torch.ones(2, 9, dtype=torch.long)
    padding[0, :3] = 0
    assert sdpa_masks(model, monkeypatch, lambda: model(ids, attention_mask=padding)) == ["matrix"] * layers
    cache = model.new_cache(16)
    prefill_then_step = (lambda: model(ids, cache=cache), lambda: model(ids[:, :1], cache=cache))
    assert sdpa_masks(model, monkeypatch, *prefill_then_step) == [plain] * layers + ["matrix"] * layers
    if name == "deepseek-v2-tiny":
        return  # add_prefix refuses multi-head latent attention
    archzoo.add_prefix(model, length=4)
    assert sdpa_masks(model, monkeypatch, lambda: model(ids)) == ["matrix"] * layers
