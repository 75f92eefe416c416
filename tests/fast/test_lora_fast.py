"""``fast.lora.FastLoRALinear`` equals the reference ``LoRALinear``: outputs and every gradient."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tolerances as tol
from archzoo.blocks.lora import LoRALinear
from archzoo.fast.lora import FastLoRALinear


@pytest.mark.parametrize("bias", [False, True])
def test_fast_lora_equals_the_reference(bias):
    torch.manual_seed(0)
    reference = LoRALinear(nn.Linear(48, 40, bias=bias), rank=4, alpha=8)
    with torch.no_grad():
        reference.lora_B.weight.normal_()
    fast = LoRALinear(nn.Linear(48, 40, bias=bias), rank=4, alpha=8)
    fast.load_state_dict(reference.state_dict())
    fast.__class__ = FastLoRALinear
    x = torch.randn(3, 7, 48)
    outputs, grads = [], []
    for layer in (reference, fast):
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        y.backward(torch.randn(y.shape, generator=torch.Generator().manual_seed(1)))
        outputs.append(y)
        grads.append([xi.grad, layer.lora_A.weight.grad, layer.lora_B.weight.grad])
    # 48- and 40-term float32 dot products of O(1) values, one addmm instead of an add apart: ~1e-6
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5, rtol=0)
    for ref, got in zip(*grads):
        # gradients: the same 48- / 40-term dot products, transposed, and sums over the 6 tokens: ~1e-6 of O(1)
        assert torch.allclose(ref, got, rtol=0, atol=tol.fp32_sum(48 + 6, 48.0))
    assert fast.weight.grad is None  # the frozen base gets no gradient


def test_fast_lora_falls_back_to_the_reference_with_dropout_or_merged():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 8), rank=2, alpha=4, dropout=0.5)
    layer.__class__ = FastLoRALinear
    layer.train()
    x = torch.ones(64, 8)
    with torch.no_grad():
        layer.lora_B.weight.fill_(1.0)
    torch.manual_seed(1)
    fast_out = layer(x)
    torch.manual_seed(1)
    assert torch.equal(fast_out, LoRALinear.forward(layer, x))  # same dropout draw: it is the reference


def test_fast_lora_under_bf16_autocast_is_the_reference():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 8), rank=2, alpha=4)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
    x = torch.randn(5, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = layer(x)
        layer.__class__ = FastLoRALinear
        got = layer(x)
    assert got.dtype == torch.bfloat16 and torch.equal(got, expected)
