"""How a sublayer F (attention or MLP) and its norm N wrap the residual stream.

    pre       h = x + F(N(x))                 GPT-2 (Radford et al. 2019), LLaMA
    post      h = N(x + F(x))                 the original Transformer (Vaswani et al. 2017)
    deepnorm  h = N(alpha * x + F(x))         DeepNet (Wang et al. 2022, "DeepNet: Scaling
                                              Transformers to 1,000 Layers"); GLM-130B uses
                                              alpha = (2N)^0.5
    sandwich  h = x + N_post(F(N(x)))         GLM-4-0414 (a second norm on the sublayer output)

With ``residual_from_normed`` (Hugging Face's ``apply_residual_connection_post_layernorm``)
the branch that skips F carries the *normalised* input N(x) instead of x:

    pre       a = N(x);  h = a + F(a)            BLOOM's option (bigscience Megatron-DeepSpeed;
                                                  no released BLOOM turns it on)
    deepnorm  a = N(x);  h = alpha * a + F(a)    ChatGLM-6B

ChatGLM-6B's form is the same network as DeepNorm's N(alpha*x + F(x)) with
every layer's input norm standing for the previous sublayer's post-norm (and
layer 0's input norm acting as an embedding norm). BLOOM's is a pre-norm
stack whose residual stream is re-normalised at every sublayer: nothing of
DeepNorm in it (no alpha, no beta init), so it is a wiring of its own,
``pre_norm_from_normed``, not DeepNorm with alpha = 1.

Each function takes the stream ``x``, the sublayer ``f``, its norm, the
optional post norm (sandwich) and alpha (deepnorm).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Sublayer = Callable[[torch.Tensor], torch.Tensor]


def pre_norm(x: torch.Tensor, f: Sublayer, norm: nn.Module, post: nn.Module | None, alpha: float) -> torch.Tensor:
    return x + f(norm(x))


def post_norm(x: torch.Tensor, f: Sublayer, norm: nn.Module, post: nn.Module | None, alpha: float) -> torch.Tensor:
    return norm(x + f(x))


def deep_norm(x: torch.Tensor, f: Sublayer, norm: nn.Module, post: nn.Module | None, alpha: float) -> torch.Tensor:
    return norm(alpha * x + f(x))


def pre_norm_from_normed(
    x: torch.Tensor, f: Sublayer, norm: nn.Module, post: nn.Module | None, alpha: float
) -> torch.Tensor:
    normed = norm(x)
    return normed + f(normed)


def deepnorm_from_normed(
    x: torch.Tensor, f: Sublayer, norm: nn.Module, post: nn.Module | None, alpha: float
) -> torch.Tensor:
    normed = norm(x)
    return alpha * normed + f(normed)


def sandwich_norm(x: torch.Tensor, f: Sublayer, norm: nn.Module, post: nn.Module | None, alpha: float) -> torch.Tensor:
    return x + post(f(norm(x)))


RESIDUAL_KINDS = {
    "pre": pre_norm,
    "post": post_norm,
    "deepnorm": deep_norm,
    "sandwich": sandwich_norm,
}
"""``[norm] placement`` -> wiring function."""

FROM_NORMED_KINDS = {
    "pre": pre_norm_from_normed,
    "deepnorm": deepnorm_from_normed,
}
"""``[norm] placement`` -> its wiring with ``residual_from_normed = true`` (BLOOM's option, ChatGLM-6B)."""


def select_wiring(placement: str, residual_from_normed: bool):
    """The wiring for a placement, taking the residual from the normalised input when asked."""
    if residual_from_normed:
        return FROM_NORMED_KINDS[placement]
    return RESIDUAL_KINDS[placement]
