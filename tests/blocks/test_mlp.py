"""Feed-forward blocks against hand-written equations (Hendrycks & Gimpel 2016; Shazeer 2020),
and every kind table against its config Literal."""

from __future__ import annotations

import math
import typing

import pytest
import torch

import tolerances as tol
from archzoo.blocks.mlp import MLP_KINDS, GeGLU, GeluMLP, SwiGLU
from archzoo.blocks.norm import NORM_KINDS
from archzoo.blocks.residual import RESIDUAL_KINDS
from archzoo.config.sections import AttentionKind, MLPKind, NormKind, NormPlacement, PositionKind
from archzoo.models.builders import ATTENTION_KINDS, POSITION_KINDS


def gelu_erf(x: torch.Tensor) -> torch.Tensor:
    """x * Phi(x), Phi the standard normal CDF = (1 + erf(x / sqrt 2)) / 2."""
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x: torch.Tensor) -> torch.Tensor:
    return x * (1.0 / (1.0 + torch.exp(-x)))


def linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """W x + b in float64."""
    y = x @ layer.weight.double().T
    return y + layer.bias.double() if layer.bias is not None else y


def randomise(module: torch.nn.Module) -> None:
    """Biases too: nn.Linear's default init is fine for weights, but we want nonzero biases."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5)


D, H = 12, 20
GAIN = 1.13  # the largest slope of GeLU (erf or tanh) and SiLU: how far an input error carries through them


def bound(x: torch.Tensor, first: list[torch.nn.Linear], hidden: torch.Tensor, mlp_gain: float, down: torch.nn.Linear) -> float:
    """float32 MLP against float64: the first projections' sums (D terms and the bias) err by ``fp32_matmul``,
    the activation (and gate) carry that by ``mlp_gain`` and round a few times, and down_proj's sums (H
    terms and the bias) carry the hidden error by its row sums and add their own."""

    def matmul_error(a: torch.Tensor, layer: torch.nn.Linear) -> float:
        if layer.bias is None:
            return tol.fp32_matmul(a, layer.weight)
        ones = torch.ones(*a.shape[:-1], 1, dtype=a.dtype)  # the bias as one more term of the sum
        return tol.fp32_matmul(torch.cat([a, ones], -1), torch.cat([layer.weight, layer.bias[:, None]], -1))

    first_error = max(matmul_error(x, layer) for layer in first)
    hidden_error = mlp_gain * first_error + tol.fp32_rounding(6, hidden.abs().max().item())
    return tol.propagated(hidden_error, down.weight) + matmul_error(hidden, down)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_mlp(bias, approximate):
    torch.manual_seed(0)
    mlp = GeluMLP(D, H, bias=bias, gelu_approximate=approximate)
    randomise(mlp)
    x = torch.randn(2, 3, D)
    act = gelu_erf if approximate == "none" else gelu_tanh
    hidden = act(linear(mlp.up_proj, x.double()))
    expected = linear(mlp.down_proj, hidden)
    atol = bound(x, [mlp.up_proj], hidden, GAIN, mlp.down_proj)
    torch.testing.assert_close(mlp(x).double(), expected, rtol=0, atol=atol)
    assert (mlp.up_proj.bias is not None) == bias and (mlp.down_proj.bias is not None) == bias


def test_gelu_erf_and_tanh_differ():
    """The two GeLUs are different functions: the approximate flag must reach the activation."""
    torch.manual_seed(1)
    exact, approx = GeluMLP(D, H), GeluMLP(D, H, gelu_approximate="tanh")
    approx.load_state_dict(exact.state_dict())
    x = torch.randn(4, D) * 3
    assert not torch.equal(exact(x), approx(x))


@pytest.mark.parametrize("bias", [False, True])
def test_swiglu(bias):
    torch.manual_seed(2)
    mlp = SwiGLU(D, H, bias=bias)
    randomise(mlp)
    x = torch.randn(2, 3, D).double()
    gate, up = linear(mlp.gate_proj, x), linear(mlp.up_proj, x)
    gated = silu(gate) * up
    expected = linear(mlp.down_proj, gated)
    gain = GAIN * up.abs().max().item() + silu(gate).abs().max().item()  # d(silu(g) u) = silu'(g) u dg + silu(g) du
    atol = bound(x, [mlp.gate_proj, mlp.up_proj], gated, gain, mlp.down_proj)
    torch.testing.assert_close(mlp(x.float()).double(), expected, rtol=0, atol=atol)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_geglu(bias, approximate):
    torch.manual_seed(3)
    mlp = GeGLU(D, H, bias=bias, gelu_approximate=approximate)
    randomise(mlp)
    x = torch.randn(2, 3, D).double()
    act = gelu_erf if approximate == "none" else gelu_tanh
    gate, up = linear(mlp.gate_proj, x), linear(mlp.up_proj, x)
    gated = act(gate) * up
    expected = linear(mlp.down_proj, gated)
    gain = GAIN * up.abs().max().item() + act(gate).abs().max().item()
    atol = bound(x, [mlp.gate_proj, mlp.up_proj], gated, gain, mlp.down_proj)
    torch.testing.assert_close(mlp(x.float()).double(), expected, rtol=0, atol=atol)


def test_gated_parameter_count_is_three_d_h():
    assert sum(p.numel() for p in SwiGLU(D, H).parameters()) == 3 * D * H
    assert sum(p.numel() for p in GeluMLP(D, H).parameters()) == 2 * D * H
    assert sum(p.numel() for p in GeGLU(D, H, bias=True).parameters()) == 3 * D * H + 2 * H + D


# ---- every kind table is keyed by exactly its config Literal ----------------------------------


@pytest.mark.parametrize(
    ("table", "literal"),
    [
        (MLP_KINDS, MLPKind),
        (NORM_KINDS, NormKind),
        (RESIDUAL_KINDS, NormPlacement),
        (POSITION_KINDS, PositionKind),
        (ATTENTION_KINDS, AttentionKind),
    ],
    ids=["MLP_KINDS", "NORM_KINDS", "RESIDUAL_KINDS", "POSITION_KINDS", "ATTENTION_KINDS"],
)
def test_kind_table_keys_equal_literal(table, literal):
    assert sorted(table) == sorted(typing.get_args(literal))
