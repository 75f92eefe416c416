"""Each fast form against its reference block, alone (``archzoo/fast/``).

Tolerances: the fast forms reorder or fuse float32 sums; over n terms of size
|x| that moves a result by about n * eps_32 * |x| (eps_32 = 1.2e-7). Each test
states its n; where a form only slices or reuses the same numbers, it is
compared exactly.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tolerances as tol
from archzoo.blocks.experts import StackedExperts
from archzoo.blocks.norm import RMSNorm
from archzoo.blocks.rope import RotaryEmbedding, apply_rotary
from archzoo.blocks.router import Router
from archzoo.config import RopeScalingSection
from archzoo.fast import FAST_FORMS, use_implementation
from archzoo.fast.experts import grouped_mm_supported
from archzoo.fast.linear import DECODING_ROWS, FastLinear, decoding_layout
from archzoo.fast.mla import per_head_matmul

EPS32 = torch.finfo(torch.float32).eps


def fast_copy(module: torch.nn.Module) -> torch.nn.Module:
    """The same module object re-classed to its fast form (shares every weight)."""
    clone = type(module).__new__(type(module))
    clone.__dict__ = dict(module.__dict__)
    clone.__class__ = FAST_FORMS[type(module)]
    return clone


def test_every_fast_form_subclasses_its_reference_and_names_it():
    for reference, fast in FAST_FORMS.items():
        assert issubclass(fast, reference) and fast.reference is reference
        assert fast.__module__.startswith("archzoo.fast.") and fast.__doc__ is None or fast.__module__


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rms_norm(dtype):
    torch.manual_seed(0)
    norm = RMSNorm(256, eps=1e-6).to(dtype)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 5, 256, dtype=dtype) * 4
    # mean of 256 squares, summed in another order: relative error ~ 256 eps_32 on the rms,
    # half of it on 1/rms; bfloat16 outputs are rounded to bf16 after (1 ulp = 2^-8 relative)
    tol = {torch.float32: 256 * EPS32, torch.float64: 1e-12, torch.bfloat16: 2**-7}[dtype]
    torch.testing.assert_close(fast_copy(norm)(x), norm(x), rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [16, 8])
def test_rotation_apply(layout, rotary_dim):
    """x cos + swap(x) (sign sin) in one fused multiply-add = x cos + rotate(x) sin: one rounding
    instead of two per element, at most 1 ulp of |x| (|x| <= 5 here: 2 * 5 * eps_32)."""
    torch.manual_seed(5)
    rope = RotaryEmbedding(rotary_dim, layout=layout)
    positions = torch.tensor([[0, 3, 17, 250]])
    x = torch.randn(2, 3, 4, 16)
    expected = apply_rotary(x, *(lambda r: (r.cos, r.sin))(rope(positions)), layout)
    got = fast_copy(rope)(positions).apply(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=10 * EPS32)
    assert torch.equal(got[..., rotary_dim:], x[..., rotary_dim:])


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cached_rope_tables_are_the_same_numbers(layout, dtype):
    """``range_rotation(start, n)`` slices tables that hold exactly what the reference computes for
    those positions, also past the first table (256 positions), which is then regrown."""
    scaling = RopeScalingSection(kind="yarn", factor=4.0, original_max_seq_len=64)
    rope = RotaryEmbedding(16, layout=layout, scaling=scaling)
    fast = fast_copy(rope)
    for start, length in [(0, 7), (250, 1), (255, 3), (600, 5), (3, 1)]:
        got = fast.range_rotation(start, length, dtype, torch.device("cpu"))
        want = rope.range_rotation(start, length, dtype, torch.device("cpu"))
        assert torch.equal(got.cos, want.cos) and torch.equal(got.sin, want.sin)
    assert fast.tables[(torch.device("cpu"), dtype)].cos.shape[-2] >= 605


@pytest.mark.parametrize("n_tokens", [1, 2, 50])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_stacked_experts_forward_and_backward(n_tokens, dtype):
    """grouped_mm (where this torch has it) or the loop, one-token path, weight before W_down.

    The sums are over d = 16, h = 8 and (weight gradients) up to n = 100 rows; the fast form
    rounds in other places (another order of summation, the weight before W_down). Rounding
    errors of n terms add up like a random walk, sqrt(n) eps |x| (eps of the dtype: float32,
    or bfloat16's 8 bits), so the bound is sqrt(100) eps max |x|; measured: <= 1.7 eps max |x|.
    A real error (a dropped or doubled term) is of the size of max |x| itself."""
    torch.manual_seed(0)
    experts = StackedExperts(16, 8, 6).to(dtype)
    experts.init_weights(0.3)
    x = torch.randn(n_tokens, 16, dtype=dtype)
    indices = torch.rand(n_tokens, 6).argsort(dim=-1)[:, :2]
    weights = torch.rand(n_tokens, 2)
    results = []
    for module in (experts, fast_copy(experts)):
        experts.zero_grad()
        xg = x.clone().requires_grad_()
        out = module(xg, indices, weights)
        out.float().pow(2).sum().backward()
        results.append((out, xg.grad, experts.gate_up_proj.grad.clone(), experts.down_proj.grad.clone()))
    eps = torch.finfo(dtype).eps
    for a, b in zip(*results):
        assert (a.float() - b.float()).abs().max() <= 10 * eps * b.float().abs().max()


def test_grouped_mm_support_is_known_here():
    """The grouped path is the one the fast experts take on this CPU for float32 (torch >= 2.8)."""
    x, w = torch.randn(4, 16), torch.randn(3, 8, 16)
    assert grouped_mm_supported(x, w) == (hasattr(torch, "_grouped_mm") or hasattr(F, "grouped_mm"))
    assert not grouped_mm_supported(torch.randn(4, 6), torch.randn(3, 8, 6))  # 24-byte rows


@pytest.mark.parametrize("seed", range(5))
def test_router_softmax_of_top_logits(seed):
    """softmax over the k largest logits = softmax over all E renormalised over the chosen k:
    sums of E = 6 exponentials, relative error ~ 6 eps_32 (1e-6 covers it)."""
    router = Router(6, 6, 2, normalize_top_k=True, routed_scaling_factor=2.5)
    with torch.no_grad():
        router.weight.copy_(torch.eye(6))
    fast = fast_copy(router)
    assert fast.softmax_of_top_logits
    logits = torch.randn(9, 6, generator=torch.Generator().manual_seed(seed)) * 3
    got, want = fast(logits), router(logits)
    assert torch.equal(got.indices.sort(-1).values, want.indices.sort(-1).values)
    order_got, order_want = got.indices.argsort(-1), want.indices.argsort(-1)
    # softmax over the top-k logits vs top-k of the full softmax, renormalised: exp (1 ulp) and sums of <= 6 terms
    torch.testing.assert_close(got.weights.gather(1, order_got), want.weights.gather(1, order_want), rtol=tol.fp32_sum(6 + 2), atol=0)
    torch.testing.assert_close(got.scores, want.scores, rtol=0, atol=0)


@pytest.mark.parametrize(("batch", "seq"), [(1, 1), (3, 5)])
def test_per_head_matmul_equals_broadcast_matmul(batch, seq):
    """Sums of 6 terms of size <= ~10: 6 * 10 * eps_32 < 1e-5."""
    torch.manual_seed(0)
    x = torch.randn(batch, 4, seq, 6)
    weight = torch.randn(4, 10, 7)[:, 2:8]  # a strided view, as the up-projection blocks are
    torch.testing.assert_close(per_head_matmul(x, weight), x @ weight, rtol=0, atol=1e-5)


def linear_model(out_features: int = 1000, in_features: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.lm_head = torch.nn.Linear(in_features, out_features, bias=False)
    return use_implementation(model, "fast")


def test_decoding_copy_is_column_major_and_used_only_inside_the_block():
    """The parameter stays an ordinary row-major tensor; the column-major copy is read only while
    decoding. Logits: sums of d = 64 terms of size <= ~1 in another order: 64 * eps_32 < 1e-5."""
    model = linear_model()
    head = model.lm_head
    assert isinstance(head, FastLinear) and head.weight.is_contiguous()
    x = torch.randn(1, 1, 64)
    plain = F.linear(x, head.weight)
    assert torch.equal(head(x), plain) and "column_major" not in head.__dict__  # outside: the parameter
    with decoding_layout(model):  # column-major weights: the 64-term sums in another order
        torch.testing.assert_close(head(x), plain, rtol=0, atol=tol.fp32_matmul(x, head.weight))
        copy = head.column_major.weight
        assert copy.t().is_contiguous() and copy.data_ptr() != head.weight.data_ptr()
        many = torch.randn(1, DECODING_ROWS + 1, 64)  # a prefill: the parameter, bit for bit
        assert torch.equal(head(many), F.linear(many, head.weight))
    assert torch.equal(head(x), plain)
    assert "column_major" not in copy_module(head).__dict__  # deep copies (and pickles) drop it


def copy_module(module):
    import copy

    return copy.deepcopy(module)


@pytest.mark.parametrize(
    "change",
    ["optimizer step", "load_state_dict", "write through .data", "new tensor"],
)
def test_decoding_copy_follows_every_change_of_the_weight(change):
    """A copy made before the weight changed is never used after: the product equals the new weight's."""
    model = linear_model()
    head = model.lm_head
    x = torch.randn(1, 1, 64)
    with decoding_layout(model):
        head(x)
    assert "column_major" in head.__dict__
    if change == "optimizer step":
        head(torch.randn(3, 64)).sum().backward()
        optimizer = torch.optim.AdamW(head.parameters(), lr=0.1, fused=True)
        optimizer.step()
    elif change == "load_state_dict":
        model.load_state_dict({"lm_head.weight": torch.randn(1000, 64)})
    elif change == "write through .data":
        head.weight.data.mul_(2.0)  # bypasses the version counter: caught by the sampled entries
    else:
        head.weight = torch.nn.Parameter(torch.randn(1000, 64))
    with torch.inference_mode(), decoding_layout(model):
        torch.testing.assert_close(head(x), F.linear(x, head.weight), rtol=0, atol=tol.fp32_matmul(x, head.weight))  # as above


def test_switching_to_reference_frees_the_copies():
    model = linear_model()
    with decoding_layout(model):
        model.lm_head(torch.randn(1, 64))
    use_implementation(model, "reference")
    assert type(model.lm_head) is torch.nn.Linear and "column_major" not in model.lm_head.__dict__
