"""Mixture of experts: routers on hand-computed examples, grouped dispatch
against a per-token loop, the Switch load-balancing loss by hand and against
transformers, and DeepSeek-V3's bias update evening out a skewed router."""

from __future__ import annotations

import math
from functools import partial
from typing import get_args

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import archzoo
import tolerances as tol
from archzoo.blocks.experts import StackedExperts
from archzoo.blocks.moe import MoE, load_balancing_loss, update_router_bias
from archzoo.blocks.router import GROUP_SCORES, SCORING_KINDS, Router
from archzoo.config.sections import GroupScore, RouterScoring
from archzoo.fast import use_implementation


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def identity_router(n_experts: int, top_k: int, **options) -> Router:
    """A router whose logits are its input (weight = I), so examples are written as logits."""
    router = Router(n_experts, n_experts, top_k, **options)
    with torch.no_grad():
        router.weight.copy_(torch.eye(n_experts))
    return router


def chosen(routing) -> dict[int, float]:
    """{expert: weight} of the first token."""
    return dict(zip(routing.indices[0].tolist(), routing.weights[0].tolist()))


def test_tables_cover_their_config_literals():
    assert set(SCORING_KINDS) == set(get_args(RouterScoring))
    assert set(GROUP_SCORES) == set(get_args(GroupScore))


def test_softmax_top_k_without_and_with_renormalising():
    logits = torch.tensor([[1.0, 2.0, 0.0, 3.0]])
    total = sum(math.exp(v) for v in (1.0, 2.0, 0.0, 3.0))
    plain = chosen(identity_router(4, 2)(logits))  # Qwen2-MoE: raw softmax probabilities
    assert plain.keys() == {3, 1}
    assert plain[3] == pytest.approx(math.exp(3) / total, rel=1e-6)
    assert plain[1] == pytest.approx(math.exp(2) / total, rel=1e-6)
    renormalised = chosen(identity_router(4, 2, normalize_top_k=True)(logits))  # Qwen3-MoE
    # e^3 / (e^3 + e^2) = sigmoid(1)
    assert renormalised[3] == pytest.approx(sigmoid(1.0), rel=1e-6)
    assert renormalised[1] == pytest.approx(sigmoid(-1.0), rel=1e-6)


def test_expert_load_counts_the_chosen_experts():
    torch.manual_seed(0)
    moe = MoE(16, n_experts=5, top_k=2, expert_hidden=8)
    moe.router.init_weights(1.0)
    moe.experts.init_weights(0.1)
    x = torch.randn(4, 6, 16)
    load = moe(x).expert_load
    chosen = (x.reshape(-1, 16) @ moe.router.weight.T).topk(2, dim=-1).indices
    assert load.tolist() == [int((chosen == e).sum()) for e in range(5)]
    assert int(load.sum()) == 4 * 6 * 2


def test_each_call_returns_its_own_signals():
    # nothing is kept on the module: a second call (another batch) leaves the first's output as it was
    torch.manual_seed(0)
    moe = MoE(16, n_experts=5, top_k=2, expert_hidden=8, aux_loss_coef=0.01).train()
    moe.router.init_weights(1.0)
    moe.experts.init_weights(0.1)
    x1, x2 = torch.randn(3, 16), torch.randn(7, 16)
    first = moe(x1)
    second = moe(x2)
    again = moe(x1)
    assert torch.equal(first.expert_load, again.expert_load) and int(first.expert_load.sum()) == 3 * 2
    assert int(second.expert_load.sum()) == 7 * 2
    assert torch.equal(first.aux_loss, again.aux_loss) and not torch.equal(first.aux_loss, second.aux_loss)
    assert not hasattr(moe, "last_aux_loss") and not hasattr(moe, "last_indices")


def test_model_outputs_keep_their_own_signals_across_calls():
    torch.manual_seed(0)
    model = archzoo.build_model("qwen3-moe-tiny").train()
    assert model.config.moe.aux_loss_coef > 0
    ids1, ids2 = torch.randint(0, 500, (1, 5)), torch.randint(0, 500, (3, 11))
    first = model(ids1, return_dict=True)
    second = model(ids2, return_dict=True)
    again = model(ids1, return_dict=True)
    k = model.config.moe.top_k
    assert [int(load.sum()) for load in first.expert_loads] == [5 * k] * len(first.expert_loads)
    assert [int(load.sum()) for load in second.expert_loads] == [33 * k] * len(second.expert_loads)
    for a, b in zip(first.expert_loads, again.expert_loads):
        assert torch.equal(a, b)
    assert torch.equal(first.aux_loss, again.aux_loss) and not torch.equal(first.aux_loss, second.aux_loss)


def test_deepseek_v2_group_limited_greedy():
    # 4 groups of 2 experts; group score = max; keep 2 groups; top 3; scaled by 2.
    logits = [5.0, 1.0, 4.9, 4.8, 4.95, 0.0, 0.0, 0.0]
    router = identity_router(8, 3, n_groups=4, topk_groups=2, group_score="max", routed_scaling_factor=2.0)
    picked = chosen(router(torch.tensor([logits])))
    # group maxima 5, 4.9, 4.95, 0 -> groups {0, 1} and {4, 5} kept; expert 2 (4.9) is out
    assert picked.keys() == {0, 4, 1}
    total = sum(math.exp(v) for v in logits)
    for expert in picked:
        assert picked[expert] == pytest.approx(2.0 * math.exp(logits[expert]) / total, rel=1e-6)
    ungrouped = chosen(identity_router(8, 3)(torch.tensor([logits])))
    assert ungrouped.keys() == {0, 4, 2}


def test_deepseek_v3_bias_only_chooses_and_weights_come_from_unbiased_scores():
    logits = [2.0, 1.0, -1.0, -2.0, 3.0, -3.0, 0.5, 0.0]
    router = identity_router(8, 2, scoring="sigmoid", correction_bias=True, normalize_top_k=True,
                             routed_scaling_factor=2.5)  # fmt: skip
    with torch.no_grad():
        router.e_score_correction_bias.copy_(torch.tensor([0, 0, 0, 0, -1.0, 0, 0, 0.6]))
    picked = chosen(router(torch.tensor([logits])))
    # choice scores: sigmoid(l) + b -> expert 7: 0.5 + 0.6 = 1.1, expert 0: 0.881; expert 4: 0.953 - 1 < 0
    assert picked.keys() == {7, 0}
    s7, s0 = sigmoid(0.0), sigmoid(2.0)
    assert picked[7] == pytest.approx(2.5 * s7 / (s7 + s0), rel=1e-6)
    assert picked[0] == pytest.approx(2.5 * s0 / (s7 + s0), rel=1e-6)


def test_v3_masked_groups_are_excluded_even_when_kept_scores_are_negative():
    # Every bias is -10, so every choice score is negative. 4 groups of 2, keep 2, top 3.
    logits = [2.0, 1.0, -1.0, -2.0, 3.0, -3.0, 0.5, 0.0]
    router = identity_router(8, 3, scoring="sigmoid", correction_bias=True, normalize_top_k=True,
                             n_groups=4, topk_groups=2, group_score="top2_sum")  # fmt: skip
    with torch.no_grad():
        router.e_score_correction_bias.fill_(-10.0)
    s = [sigmoid(v) for v in logits]
    group_sums = [s[0] + s[1] - 20, s[2] + s[3] - 20, s[4] + s[5] - 20, s[6] + s[7] - 20]
    kept = sorted(range(4), key=lambda g: -group_sums[g])[:2]
    assert kept == [0, 3]  # expert 4, the best single expert, sits in a dropped group
    picked = chosen(router(torch.tensor([logits])))
    # filling dropped groups with 0 instead of -inf would choose them (0 > every kept score)
    assert picked.keys() == {0, 1, 6}
    norm = s[0] + s[1] + s[6]
    for expert in picked:
        assert picked[expert] == pytest.approx(s[expert] / norm, rel=1e-6)


def naive_moe_output(experts: StackedExperts, x, indices, weights) -> torch.Tensor:
    """y_t = sum_j w_tj W_down,e (SiLU(W_gate,e x_t) * W_up,e x_t), one token and one choice at a time."""
    tokens = []
    for t in range(x.shape[0]):
        y = torch.zeros(x.shape[1])
        for j in range(indices.shape[1]):
            e = int(indices[t, j])
            gate, up = experts.gate_up_proj[e, :7], experts.gate_up_proj[e, 7:]  # hidden width 7
            h = F.silu(gate @ x[t]) * (up @ x[t])
            y = y + weights[t, j] * (experts.down_proj[e] @ h)
        tokens.append(y)
    return torch.stack(tokens)


@settings(max_examples=25, deadline=None)
@given(
    n_tokens=st.integers(1, 40),
    n_experts=st.integers(1, 9),
    top_k=st.integers(1, 3),
    implementation=st.sampled_from(["reference", "fast"]),
    seed=st.integers(0, 2**16),
)
def test_grouped_dispatch_and_its_gradients_equal_a_per_token_loop(n_tokens, n_experts, top_k, implementation, seed):
    top_k = min(top_k, n_experts)
    torch.manual_seed(seed)
    experts = use_implementation(StackedExperts(12, 7, n_experts), implementation)
    experts.init_weights(0.3)
    x = torch.randn(n_tokens, 12)
    indices = torch.rand(n_tokens, n_experts).argsort(dim=-1)[:, :top_k]  # distinct experts per token
    weights = torch.rand(n_tokens, top_k)
    grad = torch.randn(n_tokens, 12)
    results = []
    for run in (experts, partial(naive_moe_output, experts)):
        experts.zero_grad()
        xg, wg = x.clone().requires_grad_(), weights.clone().requires_grad_()
        out = run(xg, indices, wg)
        out.backward(grad)
        results.append((out, xg.grad, wg.grad, experts.gate_up_proj.grad.clone(), experts.down_proj.grad.clone()))
    # float32 sums in other orders: 12-term (gate/up) and 7-term (down) dots, the top-k mix, and for the
    # expert gradients a sum over up to 40 x 3 token-slots; terms |.| <= ~4 (x, grad ~N(0,1), weights 0.3 N)
    atol = tol.chain(tol.fp32_sum(12, 12 * 4.0), tol.fp32_sum(7, 7 * 4.0), tol.fp32_sum(n_tokens * top_k, n_tokens * top_k * 4.0))
    for got, expected in zip(*results):  # outputs and every gradient
        torch.testing.assert_close(got, expected, rtol=0, atol=atol)


def test_switch_loss_on_worked_examples():
    # 2 tokens, 2 experts, top-1. Balanced: f = (1/2, 1/2), P = (0.6, 0.4): 2 * (0.3 + 0.2) = 1.
    scores = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    assert load_balancing_loss(scores, torch.tensor([1, 1])).item() == pytest.approx(1.0)
    # Both to expert 0: f = (1, 0), P = (0.75, 0.25): 2 * 0.75 = 1.5.
    scores = torch.tensor([[0.8, 0.2], [0.7, 0.3]])
    assert load_balancing_loss(scores, torch.tensor([2, 0])).item() == pytest.approx(1.5)


def test_moe_aux_loss_equals_transformers_switch_loss():
    from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func

    torch.manual_seed(0)
    moe = MoE(16, n_experts=6, top_k=2, expert_hidden=8, aux_loss_coef=0.01)
    moe.router.init_weights(0.5)
    moe.experts.init_weights(0.1)
    x = torch.randn(3, 7, 16)
    moe.train()
    aux = moe(x).aux_loss
    logits = x.reshape(-1, 16) @ moe.router.weight.T
    expected = 0.01 * load_balancing_loss_func((logits,), 6, 2)
    # a sum of 21 tokens x 6 experts of positive terms in two orders: 126 eps relative
    torch.testing.assert_close(aux, expected, rtol=tol.fp32_sum(21 * 6), atol=0)
    moe.eval()
    assert moe(x).aux_loss is None  # only in training mode


def test_shared_experts_always_on_and_qwen_gate():
    torch.manual_seed(0)
    moe = MoE(16, n_experts=4, top_k=1, expert_hidden=8, shared_hidden=12, shared_gate=True)
    for p in moe.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    x = torch.randn(5, 16)
    routing = moe.router(x)
    routed = moe.experts(x, routing.indices, routing.weights)
    shared = moe.shared_experts.down_proj(F.silu(moe.shared_experts.gate_proj(x)) * moe.shared_experts.up_proj(x))
    gate = torch.sigmoid(x @ moe.shared_gate.weight.T)
    # the same modules; the block may add the two parts in its own order (one rounding of |.| <= S)
    parts = (routed.abs() + (gate * shared).abs()).max().item()
    torch.testing.assert_close(moe(x).hidden, routed + gate * shared, rtol=0, atol=tol.fp32_rounding(2, parts))


def test_update_router_bias_evens_out_a_skewed_router():
    torch.manual_seed(0)
    router = Router(16, 8, 2, scoring="sigmoid", correction_bias=True, normalize_top_k=True)
    router.init_weights(0.05)
    common = F.normalize(torch.randn(16), dim=0)
    x = torch.randn(512, 16) + 2 * common  # tokens share a direction ...
    with torch.no_grad():
        router.weight[:2] += common  # ... that experts 0 and 1 favour: they win most tokens

    def loads() -> torch.Tensor:
        with torch.no_grad():
            return torch.bincount(router(x).indices.flatten(), minlength=8).float()

    before = loads()
    assert before.max() / before.mean() > 2.5
    for _ in range(300):
        update_router_bias(router, loads(), rate=0.005)
    after = loads()
    assert after.max() / after.mean() < 1.3
    assert after.min() / after.mean() > 0.7
    bias = router.e_score_correction_bias
    assert not bias.requires_grad and "e_score_correction_bias" in router.state_dict()
    assert bias[:2].max() < bias[2:].min()  # the favoured experts were pushed down


def test_update_router_bias_on_a_model_uses_the_given_loads():
    model = archzoo.build_model("deepseek-tiny")
    out = model(torch.randint(0, 500, (2, 16)), return_dict=True)
    routers = [m.router for m in model.modules() if isinstance(m, MoE)]
    before = [r.e_score_correction_bias.clone() for r in routers]
    assert update_router_bias(model, out.expert_loads) == len(out.expert_loads) == 2
    rate = model.config.moe.bias_update_rate
    for router, load, old in zip(routers, out.expert_loads, before):
        load = load.float()
        assert torch.equal(router.e_score_correction_bias, old + rate * torch.sign(load.mean() - load))  # the same ops
        assert int(load.sum()) == 2 * 16 * model.config.moe.top_k


def test_update_router_bias_errors_name_the_problem():
    with pytest.raises(ValueError, match="correction bias"):
        update_router_bias(archzoo.build_model("qwen3-moe-tiny"), [])
    model = archzoo.build_model("deepseek-tiny")
    with pytest.raises(ValueError, match="2 routers"):
        update_router_bias(model, [torch.zeros(8)])


def test_layer_plans_show_dense_layers():
    v3 = archzoo.load_config("deepseek-v3")
    assert [p.mlp for p in v3.layer_plan[:4]] == ["dense", "dense", "dense", "moe"]
    assert sum(p.mlp == "moe" for p in v3.layer_plan) == 58
    qwen = archzoo.load_config("qwen2-moe-tiny")  # dense_layers = [1] (Qwen's mlp_only_layers)
    assert [p.mlp for p in qwen.layer_plan] == ["moe", "dense", "moe"]
