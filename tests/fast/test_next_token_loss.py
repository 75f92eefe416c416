"""The fused head + cross-entropy (``fast/next_token_loss.py``) against its reference block and
against the equation, in float64:

    z = h W^T,    L = 1/N sum_{i: y_i != -100} ( logsumexp(z_i) - z_i[y_i] ),
    dL/dz_i = (softmax(z_i) - e_{y_i}) / N,    dL/dh = dL/dz W,    dL/dW = (dL/dz)^T h.

Tolerances (``float32_error``): one float32 evaluation of these, in any order, against the exact
values, to first order in eps_32. Each logit is a dot product of d terms (``tol.fp32_matmul``), the
logsumexp a sum of V positive terms (V eps relative), the loss a mean of N terms, dL/dh a sum of V
terms and dL/dW a sum of N terms (``tol.fp32_matmul`` on the exact dL/dz); softmax errors carry into
both gradients through |W| and |h|. Two float32 evaluations (fast and reference) differ by at most
the sum of their two bounds. Where both sides do the very same operations (the fallbacks, a power
of two scale, accumulation onto .grad, perturbing ignored positions) the test is ``torch.equal``.

``MIN_LOGITS`` and ``CHUNK_ELEMENTS`` are lowered (monkeypatch) so that small tensors take the fused
path through several chunks, the last one shorter; ``fused_calls`` records that it ran.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archzoo
import archzoo.fast.next_token_loss as ntl
import tolerances as tol
from archzoo import Config
from archzoo.blocks.next_token_loss import IGNORE_INDEX, NextTokenLoss
from archzoo.errors import InputError
from archzoo.fast import FAST_FORMS, use_implementation
from archzoo.fast.linear import FastLinear
from archzoo.fast.next_token_loss import FastNextTokenLoss
from archzoo.train import next_token_loss

B, T, D, V = 3, 7, 24, 96
N = B * T  # 21 positions
IGNORED = [1, 4, 5, 6, 7, 13]  # flat positions; 4..7 are the whole second chunk at 4 rows a chunk
ROWS_PER_CHUNK = 4  # 21 = 5 chunks of 4 + a last one of 1


@dataclass
class Call:
    n_rows: int
    chunk_rows: int
    want_hidden: bool
    want_weight: bool
    bfloat16: bool = False  # the matmuls in bfloat16 (autocast)


def chunk_elements(rows: int, vocab: int = V) -> int:
    """A CHUNK_ELEMENTS that gives ``rows`` rows per chunk (largest power of two <= CHUNK_ELEMENTS // V),
    rounded up to just below the next power of two, so that the floor and the power of two both matter."""
    return (2 * rows - 1) * vocab + vocab - 1


@pytest.fixture
def fused_calls(monkeypatch):
    """Small tensors take the fused path, 4 rows a chunk; the list records each run of the chunk loop."""
    calls: list[Call] = []
    real = ntl.head_cross_entropy

    def recording(rows, weight, targets, buffer, low_buffer=None, *, want_hidden, want_weight):
        calls.append(Call(rows.shape[0], buffer.shape[0], want_hidden, want_weight, low_buffer is not None))
        return real(rows, weight, targets, buffer, low_buffer, want_hidden=want_hidden, want_weight=want_weight)

    monkeypatch.setattr(ntl, "head_cross_entropy", recording)
    monkeypatch.setattr(ntl, "MIN_LOGITS", N * V)  # exactly N x V logits still run fused (>=)
    monkeypatch.setattr(ntl, "CHUNK_ELEMENTS", chunk_elements(ROWS_PER_CHUNK))
    return calls


def problem(seed: int = 0, ignored=IGNORED):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, D, generator=g)
    weight = torch.randn(V, D, generator=g) * 0.3  # logits of a few units
    targets = torch.randint(0, V, (B, T), generator=g)
    targets.view(-1)[list(ignored)] = IGNORE_INDEX
    return hidden, weight, targets


def make_head(weight: torch.Tensor, kind=nn.Linear, bias: bool = False) -> nn.Linear:
    head = kind(weight.shape[1], weight.shape[0], bias=bias, dtype=weight.dtype)
    with torch.no_grad():
        head.weight.copy_(weight)
    return head


def run(loss_module, hidden, weight, targets, *, scale=1.0, head_kind=nn.Linear, grad_hidden=True, grad_weight=True):
    """(loss, dL/dh, dL/dW) through ``loss_module``, from fresh leaves (None where no gradient was asked)."""
    h = hidden.clone().requires_grad_(grad_hidden)
    head = make_head(weight, head_kind)
    head.weight.requires_grad_(grad_weight)
    loss = loss_module(h, head, targets)
    if loss.requires_grad:
        (loss * scale).backward()
    return loss.detach(), h.grad, head.weight.grad


def exact(hidden, weight, targets) -> dict:
    """The equation in float64, written out (no cross_entropy, no autograd)."""
    h = hidden.detach().double().reshape(-1, hidden.shape[-1])
    w = weight.detach().double()
    y = targets.reshape(-1)
    kept = y != IGNORE_INDEX
    n = int(kept.sum())
    z = h @ w.T
    top = z.max(dim=1, keepdim=True).values
    s = (z - top).exp().sum(dim=1, keepdim=True)
    lse = top + s.log()
    safe = torch.where(kept, y, 0)
    terms = torch.where(kept, (lse - z.gather(1, safe[:, None])).squeeze(1), 0)
    p = torch.where(kept[:, None], (z - lse).exp(), 0)  # softmax on kept rows, 0 on ignored ones
    dz = p - F.one_hot(safe, w.shape[0]).double() * kept[:, None]  # N dL/dz
    return dict(
        h=h, w=w, z=z, top=top, s=s, lse=lse, terms=terms, p=p, dz=dz, n=n,
        loss=terms.sum() / n, hidden=(dz @ w / n).reshape(hidden.shape), weight=dz.T @ h / n,
    )


def float32_error(hidden, weight, targets) -> dict:
    """How far one float32 evaluation of (L, dL/dh, dL/dW), in any summation order, can be from ``exact``
    (first order in eps; module docstring)."""
    e = tol.EPS32
    x = exact(hidden, weight, targets)
    h, w, n, vocab = x["h"], x["w"], x["n"], x["w"].shape[0]
    z_err = tol.fp32_matmul(h, w)  # each logit: d terms, d eps max(|h| |W|^T)
    # exp(z - max z): both ends off by z_err, the difference rounded (eps |z - max z|), exp to 1 ulp (eps); relative
    exp_err = 2 * z_err + e * (x["z"] - x["top"]).abs().max().item() + e
    sum_err = exp_err + tol.fp32_sum(vocab)  # V positive terms: relative errors stay relative, + V eps
    # log of the sum (absolute = relative error of the sum, + rounding of the log), + max z (z_err, rounded)
    lse_err = sum_err + e * x["s"].log().abs().max().item() + z_err + e * x["lse"].abs().max().item()
    # softmax, relative: exp(z - max) / sum (fast) or exp(z - lse) (reference's log_softmax); the larger
    p_err = max(exp_err + sum_err + e, z_err + lse_err + e * (x["z"] - x["lse"]).abs().max().item() + e)
    term_err = lse_err + z_err + e * x["terms"].abs().max().item()  # lse - z_y, rounded
    loss = x["loss"].item()
    loss_err = term_err + tol.fp32_sum(n, loss) + e * loss  # mean of n terms: n eps L, + the division
    # N dL/dz, element by element: the softmax's error, + p - e_y and the 1/N, grad_out products rounded (3 eps)
    dz_err = p_err * x["p"] + 3 * e * x["dz"].abs()
    hidden_err = ((dz_err @ w.abs()).max().item() + tol.fp32_matmul(x["dz"], w.T)) / n  # V terms
    weight_err = ((dz_err.T @ h.abs()).max().item() + tol.fp32_matmul(x["dz"].T, h.T)) / n  # N terms
    return dict(
        loss=loss_err,
        hidden=hidden_err + 3 * e * x["hidden"].abs().max().item(),  # scaling by grad / N: 3 roundings
        weight=weight_err + 3 * e * x["weight"].abs().max().item(),
    )


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.double() - b.double()).abs().max().item()


def assert_within(got, expected, bound, what):
    diff = max_diff(got, expected)
    assert diff <= bound, f"{what}: |diff| {diff:.3g} > bound {bound:.3g}"


def assert_matches(fast, reference, hidden, weight, targets, scale=1.0):
    """fast and reference against the float64 equation (one bound each) and each other (two)."""
    bound = float32_error(hidden, weight, targets)
    x = exact(hidden, weight, targets)
    for i, what in enumerate(("loss", "hidden", "weight")):
        if fast[i] is None:
            assert reference[i] is None, what
            continue
        b, want = (bound[what] * (1 if i == 0 else abs(scale))), (x[what] * (1 if i == 0 else scale))
        assert_within(fast[i], want, b, f"fast {what} vs float64")
        assert_within(reference[i], want, b, f"reference {what} vs float64")
        assert_within(fast[i], reference[i], 2 * b, f"fast {what} vs reference")


# 1. loss and gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("rows", [1, 4, 8, 32], ids=lambda r: f"{r}-rows")
@pytest.mark.parametrize("head_kind", [nn.Linear, FastLinear])
def test_loss_and_gradients_equal_reference_and_float64(fused_calls, monkeypatch, rows, head_kind):
    """Chunks of 1, 4, 8 rows (21 = 2 x 8 + 5: an uneven last chunk) and 32 (capped at N = 21: one chunk)."""
    monkeypatch.setattr(ntl, "CHUNK_ELEMENTS", chunk_elements(rows))
    hidden, weight, targets = problem(1)
    loss_module = FastNextTokenLoss()
    fast = run(loss_module, hidden, weight, targets, head_kind=head_kind)
    assert fused_calls == [Call(N, min(rows, N), True, True)]
    assert loss_module.__dict__["chunk_buffer"].shape == (min(rows, N), V)
    assert fast[0].dtype == torch.float32 and fast[0].dim() == 0
    reference = run(NextTokenLoss(), hidden, weight, targets, head_kind=head_kind)
    assert_matches(fast, reference, hidden, weight, targets)


def test_chunk_buffer_is_kept_between_calls_and_outside_the_state_dict(fused_calls):
    hidden, weight, targets = problem(2)
    loss_module = FastNextTokenLoss()
    run(loss_module, hidden, weight, targets)
    buffer = loss_module.__dict__["chunk_buffer"]
    run(loss_module, hidden * 2, weight, targets)
    assert loss_module.__dict__["chunk_buffer"] is buffer
    assert not loss_module.state_dict() and not list(loss_module.buffers())
    wider = torch.randn(2 * V, D) * 0.3  # another vocabulary: a new buffer (2V: rows = 2 at this CHUNK_ELEMENTS)
    run(loss_module, hidden, wider, targets)
    assert loss_module.__dict__["chunk_buffer"].shape == (2, 2 * V)


# 2. ignored positions ------------------------------------------------------------------------------------


def test_ignored_positions_contribute_nothing(fused_calls):
    """Positions 4..7 fill the second chunk, 20 is the last chunk (of one row) alone: both chunks all ignored."""
    ignored = [0, 4, 5, 6, 7, 11, 20]
    hidden, weight, targets = problem(3, ignored)
    fast = run(FastNextTokenLoss(), hidden, weight, targets)
    reference = run(NextTokenLoss(), hidden, weight, targets)
    assert len(fused_calls) == 1
    assert_matches(fast, reference, hidden, weight, targets)
    for grad in (fast[1], reference[1]):
        assert torch.equal(grad.reshape(N, D)[ignored], torch.zeros(len(ignored), D))
    # perturbation: other hidden states at the ignored positions change no bit of the loss, of dL/dW,
    # nor of dL/dh elsewhere (their rows of dL/dz are exact zeros)
    moved = hidden.clone()
    moved.view(N, D)[ignored] = torch.randn(len(ignored), D, generator=torch.Generator().manual_seed(9)) * 3
    again = run(FastNextTokenLoss(), moved, weight, targets)
    kept = [i for i in range(N) if i not in ignored]
    assert torch.equal(again[0], fast[0]) and torch.equal(again[2], fast[2])
    assert torch.equal(again[1].reshape(N, D)[kept], fast[1].reshape(N, D)[kept])


# 3. gradient scaling and accumulation ---------------------------------------------------------------------


def test_scaled_loss_scales_the_gradients(fused_calls):
    """(L / 4).backward(): a power of two changes no rounding, so exactly a quarter; 1/3 within the bound."""
    hidden, weight, targets = problem(4)
    one = run(FastNextTokenLoss(), hidden, weight, targets)
    quarter = run(FastNextTokenLoss(), hidden, weight, targets, scale=0.25)
    assert torch.equal(quarter[1], one[1] * 0.25) and torch.equal(quarter[2], one[2] * 0.25)
    third = run(FastNextTokenLoss(), hidden, weight, targets, scale=1 / 3)
    assert_matches(third, run(NextTokenLoss(), hidden, weight, targets, scale=1 / 3), hidden, weight, targets, 1 / 3)
    assert all(c.want_hidden and c.want_weight for c in fused_calls) and len(fused_calls) == 3


def test_gradients_accumulate_onto_existing_grad(fused_calls):
    hidden, weight, targets = problem(5)
    fresh = run(FastNextTokenLoss(), hidden, weight, targets)
    g = torch.Generator().manual_seed(6)
    before_h, before_w = torch.randn(B, T, D, generator=g), torch.randn(V, D, generator=g)
    h = hidden.clone().requires_grad_()
    head = make_head(weight)
    h.grad, head.weight.grad = before_h.clone(), before_w.clone()
    FastNextTokenLoss()(h, head, targets).backward()
    assert torch.equal(h.grad, before_h + fresh[1]) and torch.equal(head.weight.grad, before_w + fresh[2])


def test_micro_batches_accumulate_as_the_reference(fused_calls):
    """Two micro-batches through one module and one head, each (L_k / 2).backward(); also both forwards
    before either backward (the chunk buffer is reused in between: the gradients were formed already)."""
    batches = [problem(7), problem(8)]
    weight = batches[0][1]
    results = {}
    for name, cls in (("reference", NextTokenLoss), ("fast", FastNextTokenLoss), ("fast, forwards first", FastNextTokenLoss)):
        loss_module, head = cls(), make_head(weight)
        if name == "fast, forwards first":
            sum(loss_module(h, head, t) / 2 for h, _, t in batches).backward()
        else:
            for h, _, t in batches:  # forward, backward, forward, backward: a training loop
                (loss_module(h, head, t) / 2).backward()
        results[name] = head.weight.grad
    bound = sum(float32_error(h, weight, t)["weight"] / 2 for h, _, t in batches) + tol.EPS32 * results["reference"].abs().max().item()
    assert_within(results["fast"], results["reference"], 2 * bound, "accumulated dL/dW")
    assert torch.equal(results["fast"], results["fast, forwards first"])  # g1 + g2: one commutative addition


# 4. what requires a gradient ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "seed, grad_hidden, grad_weight", [(10, True, False), (11, False, True)], ids=["frozen head", "hidden without gradient"]
)
def test_only_what_requires_a_gradient_gets_one(fused_calls, seed, grad_hidden, grad_weight):
    hidden, weight, targets = problem(seed)
    fast = run(FastNextTokenLoss(), hidden, weight, targets, grad_hidden=grad_hidden, grad_weight=grad_weight)
    reference = run(NextTokenLoss(), hidden, weight, targets, grad_hidden=grad_hidden, grad_weight=grad_weight)
    absent, present = (2, 1) if grad_hidden else (1, 2)
    assert fast[absent] is None and reference[absent] is None and fast[present] is not None
    assert fused_calls == [Call(N, ROWS_PER_CHUNK, grad_hidden, grad_weight)]
    assert_matches(fast, reference, hidden, weight, targets)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_without_gradients_only_the_loss(fused_calls, mode):
    hidden, weight, targets = problem(12)
    h, head = hidden.clone().requires_grad_(), make_head(weight)
    with mode():
        loss = FastNextTokenLoss()(h, head, targets)
        expected = NextTokenLoss()(h, head, targets)
    assert not loss.requires_grad and loss.grad_fn is None
    assert fused_calls == [Call(N, ROWS_PER_CHUNK, False, False)]
    bound = float32_error(hidden, weight, targets)["loss"]
    assert_within(loss, exact(hidden, weight, targets)["loss"], bound, "loss vs float64")
    assert_within(loss, expected, 2 * bound, "loss vs reference")


# 5. tied embeddings, whole model -------------------------------------------------------------------------


def tied_config() -> Config:
    data = archzoo.load_config("llama-tiny").to_dict()
    data["name"] = "llama-tiny-tied"
    data["model"].update(tie_embeddings=True, vocab_size=384, d_model=64)
    return Config.from_dict(data)


def test_tied_head_full_model_gradients(fused_calls, monkeypatch):
    """The tied matrix gets the fused head's dL/dW plus the embedding's scatter, as with the reference.

    Tolerance per parameter, relative to its largest gradient: the head's backward sums V = 384 terms, then
    each of the 2 layers' backward sums over at most the MLP width (352) and d_model (64) twice
    (attention and residual projections): n eps per sum, chained."""
    cfg = tied_config()
    vocab, width, d_model = cfg.model.vocab_size, cfg.to_dict()["mlp"]["hidden"], cfg.model.d_model
    monkeypatch.setattr(ntl, "CHUNK_ELEMENTS", chunk_elements(4, vocab))  # 18 positions: 4 x 4 + 2
    models = {}
    for implementation in ("reference", "fast"):
        torch.manual_seed(0)
        models[implementation] = archzoo.build_model(cfg, implementation=implementation)
    assert all(m.lm_head.weight is m.embed.weight for m in models.values())
    g = torch.Generator().manual_seed(13)
    ids = torch.randint(0, vocab, (2, 9), generator=g)
    targets = torch.randint(0, vocab, (2, 9), generator=g)
    targets[0, :3] = IGNORE_INDEX
    for model in models.values():
        model(ids, targets=targets).backward()
    assert fused_calls == [Call(18, 4, True, True)]
    relative = tol.chain(tol.fp32_sum(vocab), *[tol.fp32_sum(width) + 2 * tol.fp32_sum(d_model)] * cfg.model.n_layers)
    fast_params = dict(models["fast"].named_parameters())
    for name, param in models["reference"].named_parameters():
        scale = param.grad.abs().max().item()
        assert scale > 0, name
        assert_within(fast_params[name].grad, param.grad, relative * scale, name)
    # the head's part is there: without it the tied gradient would be the embedding's scatter alone,
    # nonzero only on the input ids' rows
    unused = torch.ones(vocab, dtype=torch.bool)
    unused[ids.flatten()] = False
    assert fast_params["embed.weight"].grad[unused].abs().sum() > 0


# 6. fallbacks -------------------------------------------------------------------------------------------


def head_with_bias(weight):
    head = make_head(weight, bias=True)
    with torch.no_grad():
        head.bias.normal_(generator=torch.Generator().manual_seed(14))
    return head


class SubclassedLinear(nn.Linear):
    """Not nn.Linear itself: another block (as NormHead, LoRALinear), so the reference runs."""


@pytest.mark.parametrize(
    "case", ["autocast float16", "bfloat16 head under autocast", "head with bias", "below MIN_LOGITS", "float64",
             "nn.Linear subclass"]
)
def test_falls_back_to_the_reference_bit_for_bit(fused_calls, monkeypatch, case):
    hidden, weight, targets = problem(15)
    if case == "float64":
        hidden, weight = hidden.double(), weight.double()
    if case == "below MIN_LOGITS":
        monkeypatch.setattr(ntl, "MIN_LOGITS", N * V + 1)
    outs = []
    for cls in (FastNextTokenLoss, NextTokenLoss):
        loss_module = cls()
        h = hidden.clone().requires_grad_()
        if case == "head with bias":
            head = head_with_bias(weight)
        else:
            head = make_head(weight, SubclassedLinear if case == "nn.Linear subclass" else nn.Linear)
        if case == "bfloat16 head under autocast":  # FSDP2's gathered bf16 weights: no float32 master to fuse
            head = head.bfloat16()
        if case in ("autocast float16", "bfloat16 head under autocast"):
            with torch.autocast("cpu", dtype=torch.float16 if case == "autocast float16" else torch.bfloat16):
                loss = loss_module(h, head, targets)
        else:
            loss = loss_module(h, head, targets)
        loss.backward()
        assert "chunk_buffer" not in loss_module.__dict__
        outs.append((loss, h.grad, head.weight.grad))
    assert fused_calls == []
    (loss, dh, dw), (ref_loss, ref_dh, ref_dw) = outs
    assert loss.dtype == torch.float32  # in float32 whatever the head's dtype (blocks/next_token_loss.py)
    assert torch.equal(loss, ref_loss) and torch.equal(dh, ref_dh) and torch.equal(dw, ref_dw)


# 6b. under bfloat16 autocast ------------------------------------------------------------------------


def autocast_run(loss_module, hidden, weight, targets, **kwargs):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return run(loss_module, hidden, weight, targets, **kwargs)


def bfloat16_error(hidden, weight, targets) -> dict:
    """How far autocast's evaluation can be from the equation in float64 on the bfloat16-rounded h and W
    (what autocast multiplies), to first order, with u = 2^-8 (one bfloat16 rounding, relative):
    each logit is rounded to bfloat16 (u |z|, plus its float32 dot product); logsumexp and z_y move by at
    most that, the loss by twice it; each softmax entry moves by 2 z_err relative, and dL/dz is rounded
    to bfloat16 (u |dz|) before its two products, whose results are rounded again (u of each; dL/dW once
    per chunk of rows: u times the sum of the chunks' magnitudes, at most |dz|^T |h|)."""
    u = 2.0**-8
    x = exact(hidden.bfloat16(), weight.bfloat16(), targets)
    h, w, n = x["h"], x["w"], x["n"]
    z_err = u * x["z"].abs().max().item() + tol.fp32_matmul(h, w)
    loss_err = 2 * z_err + float32_error(hidden.bfloat16().float(), weight.bfloat16().float(), targets)["loss"]
    dz_err = 2 * z_err * x["p"] + u * x["dz"].abs()
    hidden_err = ((dz_err @ w.abs()).max().item() + tol.fp32_matmul(x["dz"], w.T)) / n + u * x["hidden"].abs().max().item()
    weight_err = ((dz_err.T @ h.abs()).max().item() + tol.fp32_matmul(x["dz"].T, h.T)) / n
    weight_err += u * (x["dz"].abs().T @ h.abs()).max().item() / n
    return x, dict(loss=loss_err, hidden=hidden_err, weight=weight_err)


@pytest.mark.parametrize("rows", [4, 32], ids=lambda r: f"{r}-rows")
def test_under_bf16_autocast_the_matmuls_run_in_bfloat16_and_the_softmax_in_float32(fused_calls, monkeypatch, rows):
    """The fused form under autocast, and autocast's own reference, against the equation on the bfloat16
    inputs (``bfloat16_error``); the two against each other within both bounds."""
    monkeypatch.setattr(ntl, "CHUNK_ELEMENTS", chunk_elements(rows))
    hidden, weight, targets = problem(21)
    loss_module = FastNextTokenLoss()
    fast = autocast_run(loss_module, hidden, weight, targets)
    assert fused_calls == [Call(N, min(rows, N), True, True, bfloat16=True)]
    low = loss_module.__dict__["chunk_buffer_low"]
    assert low.dtype == torch.bfloat16 and low.shape == loss_module.__dict__["chunk_buffer"].shape == (min(rows, N), V)
    reference = autocast_run(NextTokenLoss(), hidden, weight, targets)
    x, bound = bfloat16_error(hidden, weight, targets)
    for got, ref, what in zip(fast, reference, ("loss", "hidden", "weight")):
        assert got.dtype == torch.float32, what  # the gradients of float32 leaves; the loss in float32
        assert_within(got, x[what], bound[what], f"fast {what} vs float64")
        assert_within(ref, x[what], bound[what], f"reference {what} vs float64")
        assert_within(got, ref, 2 * bound[what], f"fast {what} vs reference")


def test_under_bf16_autocast_a_bfloat16_hidden_gets_a_bfloat16_gradient(fused_calls):
    hidden, weight, targets = problem(22)
    fast = autocast_run(FastNextTokenLoss(), hidden.bfloat16(), weight, targets)
    assert fused_calls == [Call(N, ROWS_PER_CHUNK, True, True, bfloat16=True)]
    assert fast[1].dtype == torch.bfloat16 and fast[2].dtype == torch.float32
    x, bound = bfloat16_error(hidden, weight, targets)
    assert_within(fast[0], x["loss"], bound["loss"], "loss vs float64")
    # one more rounding of dL/dh, to bfloat16 (2^-8 of it)
    assert_within(fast[1], x["hidden"], bound["hidden"] + 2.0**-8 * x["hidden"].abs().max().item(), "dL/dh vs float64")


def test_under_bf16_autocast_without_gradients_only_the_loss(fused_calls):
    hidden, weight, targets = problem(23)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = FastNextTokenLoss()(hidden, make_head(weight), targets)
    assert fused_calls == [Call(N, ROWS_PER_CHUNK, False, False, bfloat16=True)]
    x, bound = bfloat16_error(hidden, weight, targets)
    assert_within(loss, x["loss"], bound["loss"], "loss vs float64")


# 7. a second backward ------------------------------------------------------------------------------------


def test_second_backward_is_a_clear_error(fused_calls):
    hidden, weight, targets = problem(16)
    h, head = hidden.clone().requires_grad_(), make_head(weight)
    loss = NextTokenLoss()(h, head, targets)  # the reference can (so the error is the fused form's own)
    loss.backward(retain_graph=True)
    loss.backward()
    loss = FastNextTokenLoss()(h, head, targets)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"backward ran twice \(retain_graph=True\).*implementation='reference'"):
        loss.backward()


def test_double_backward_through_the_fused_gradients_is_refused(fused_calls):
    """create_graph=True would differentiate gradients that were formed, not traced, in the forward."""
    hidden, weight, targets = problem(18)
    h, head = hidden.clone().requires_grad_(), make_head(weight)
    loss = FastNextTokenLoss()(h, head, targets)
    with pytest.raises(RuntimeError, match=r"cannot be differentiated twice \(create_graph=True\).*'reference'"):
        torch.autograd.grad(loss, h, create_graph=True)


@pytest.mark.parametrize("implementation", ["reference", "fast"])
def test_all_ignored_gives_a_nan_loss_and_zero_gradients_as_the_reference(fused_calls, implementation):
    """A micro-batch that is all padding: mean over no position is NaN, as F.cross_entropy gives, and it
    must add nothing to the gradients (under accumulation a NaN would poison the whole step)."""
    model, ids, _ = tiny(implementation)
    loss = model(ids, targets=torch.full_like(ids, IGNORE_INDEX))
    loss.backward()
    assert torch.isnan(loss)
    assert fused_calls or implementation == "reference"
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.int8, torch.uint8])
@pytest.mark.parametrize("implementation", ["reference", "fast"])
def test_narrow_integer_targets_give_the_int64_loss(fused_calls, implementation, dtype):
    model, ids, targets = tiny(implementation)
    targets = targets.clamp(min=0, max=torch.iinfo(dtype).max)  # representable in every dtype (no -100)
    assert torch.equal(model(ids, targets=targets.to(dtype)), model(ids, targets=targets))


# 8. CausalLM(..., targets=) ----------------------------------------------------------------------------------


def tiny(implementation: str):
    torch.manual_seed(0)
    model = archzoo.build_model("qwen3-tiny", implementation=implementation)
    g = torch.Generator().manual_seed(17)
    vocab = model.config.model.vocab_size
    ids = torch.randint(0, vocab, (2, 9), generator=g)
    targets = torch.cat([ids[:, 1:], torch.full((2, 1), IGNORE_INDEX)], dim=1)  # next tokens; none after the last
    targets[1, :2] = IGNORE_INDEX
    return model, ids, targets


@pytest.mark.parametrize("implementation", ["reference", "fast"])
def test_model_loss_equals_train_next_token_loss(implementation):
    """Default MIN_LOGITS (18 x 512 logits: below it): both run the reference block on the same logits."""
    model, ids, targets = tiny(implementation)
    loss = model(ids, targets=targets)
    assert loss.dim() == 0 and loss.dtype == torch.float32
    assert "chunk_buffer" not in model.next_token_loss.__dict__
    assert torch.equal(loss, next_token_loss(model(ids), targets))
    out = model(ids, targets=targets, return_dict=True)
    assert out.logits is None and out.aux_loss is None and torch.equal(out.loss, loss)
    assert type(model(ids, return_dict=True).logits) is torch.Tensor and model(ids, return_dict=True).loss is None


def test_fused_model_loss_equals_train_next_token_loss(fused_calls):
    model, ids, targets = tiny("fast")
    assert type(model.next_token_loss) is FastNextTokenLoss
    seen = []
    model.final_norm.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    out = model(ids, targets=targets, return_dict=True)
    assert fused_calls and fused_calls[-1].n_rows == 18 and out.logits is None
    expected = next_token_loss(model(ids), targets)
    bound = float32_error(seen[0], model.lm_head.weight, targets)["loss"]
    assert_within(out.loss, exact(seen[0], model.lm_head.weight, targets)["loss"], bound, "model loss vs float64")
    assert_within(out.loss, expected, 2 * bound, "model loss vs train.next_token_loss")


@pytest.mark.parametrize(
    "change, kwargs, message",
    [
        (lambda t: t[:, :-1], {}, r"targets: must be \[batch, seq\] = \[2, 9\].*got \[2, 8\]"),
        (lambda t: t.flatten(), {}, r"targets: must be \[batch, seq\]"),
        (lambda t: t.float(), {}, r"targets: must hold integer token ids.*float32"),
        (lambda t: t > 0, {}, r"targets: must hold integer token ids.*bool"),
        (lambda t: t.tolist(), {}, r"targets: must be a torch.Tensor"),
        (lambda t: t.index_fill(1, torch.tensor([3]), 512), {}, r"targets: id 512 is neither in the vocabulary \[0, 512\)"),
        (lambda t: t.index_fill(1, torch.tensor([3]), -5), {}, r"targets: id -5 is neither"),
        (lambda t: t, {"logits_to_keep": 1}, r"logits_to_keep: must be 0 with targets"),
    ],
    ids=["short", "1-D", "float", "bool", "list", "id = vocab", "-5", "logits_to_keep"],
)
def test_bad_targets_are_input_errors(change, kwargs, message):
    model, ids, targets = tiny("fast")
    with pytest.raises(InputError, match=message):
        model(ids, targets=change(targets), **kwargs)


def test_edge_ids_are_accepted():
    model, ids, targets = tiny("reference")
    targets[0, 0], targets[0, 1] = model.config.model.vocab_size - 1, 0
    assert torch.isfinite(model(ids, targets=targets))


# 9. the buffer does not travel ---------------------------------------------------------------------------------


def test_switching_to_reference_drops_the_chunk_buffer(fused_calls):
    model, ids, targets = tiny("fast")
    model(ids, targets=targets).backward()
    assert "chunk_buffer" in model.next_token_loss.__dict__
    use_implementation(model, "reference")
    assert type(model.next_token_loss) is NextTokenLoss
    assert not any("chunk_buffer" in m.__dict__ for m in model.modules())
    assert FAST_FORMS[NextTokenLoss] is FastNextTokenLoss


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_copies_do_not_carry_the_chunk_buffer(fused_calls, how):
    hidden, weight, targets = problem(18)
    loss_module = FastNextTokenLoss()
    loss = run(loss_module, hidden, weight, targets)[0]
    assert "chunk_buffer" in loss_module.__dict__
    clone = copy.deepcopy(loss_module) if how == "deepcopy" else pickle.loads(pickle.dumps(loss_module))
    assert type(clone) is FastNextTokenLoss and "chunk_buffer" not in clone.__dict__
    assert "chunk_buffer" in loss_module.__dict__  # the original keeps its own
    assert torch.equal(run(clone, hidden, weight, targets)[0], loss)  # and the copy works (a fresh buffer)
    assert "chunk_buffer" in clone.__dict__


def test_deepcopy_of_a_fast_model_does_not_carry_the_chunk_buffer(fused_calls):
    model, ids, targets = tiny("fast")
    loss = model(ids, targets=targets)
    clone = copy.deepcopy(model)
    assert "chunk_buffer" not in clone.next_token_loss.__dict__
    assert "chunk_buffer" not in clone.state_dict() and clone.state_dict().keys() == model.state_dict().keys()
    assert torch.equal(clone(ids, targets=targets), loss)
