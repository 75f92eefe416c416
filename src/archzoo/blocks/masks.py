"""Attention masks: which key slot each query slot may see (True = may attend).

causal          key k visible to query q iff k <= q                (GPT)
padding         key k visible iff attention_mask[b, k] == 1         (HF convention)
explicit        a boolean [batch, q, kv] matrix given by the caller (GLM prefix-LM
                and blank infilling: k < sep or k <= q)

With a KV cache of ``past`` slots, query i sits at slot past + i. Biases
(ALiBi) are added to the scores, and a disallowed key gets -inf.

A query row that may see nothing (a padding token at the left edge) would
make softmax return NaN; such rows may see their own slot instead. Their
outputs belong to padding and are never read.
"""

from __future__ import annotations

import torch


def causal_mask(q_len: int, kv_len: int, past: int, device: torch.device | None = None) -> torch.Tensor:
    """``[q, kv]`` bool: key k <= query slot past + i."""
    q_slot = torch.arange(past, past + q_len, device=device)
    k_slot = torch.arange(kv_len, device=device)
    return k_slot[None, :] <= q_slot[:, None]


def padding_allowed(attention_mask: torch.Tensor) -> torch.Tensor:
    """``[batch, kv]`` 1/0 (or bool) keep-mask -> ``[batch, 1, 1, kv]`` bool."""
    return attention_mask.bool()[:, None, None, :]


def never_empty(allowed: torch.Tensor, past: int) -> torch.Tensor:
    """Let rows that see no key see their own slot (avoids NaN from an all -inf row)."""
    q_len, kv_len = allowed.shape[-2:]
    q_slot = torch.arange(past, past + q_len, device=allowed.device)
    own_slot = torch.arange(kv_len, device=allowed.device)[None, :] == q_slot[:, None]
    return allowed | (own_slot & ~allowed.any(-1, keepdim=True))


def build_mask(
    q_len: int,
    past: int,
    attention_mask: torch.Tensor | None,
    *,
    bias: torch.Tensor | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """What query slot i may see of key slot k, as the matrix SDPA adds to its scores.

    attention_mask: None (causal), ``[batch, kv]`` padding (1 = keep, covering
    past + current slots), or ``[batch, q, kv]`` / ``[batch, 1, q, kv]`` bool
    (True = may attend; causality is then the caller's business).
    bias: ``[heads, q, kv]`` added to the scores (ALiBi).

    Returns ``[batch or 1, 1, q, kv]`` bool (True = may attend) without a bias,
    else the bias with -inf where a key may not be seen, ``[batch or 1, heads, q, kv]``.
    """
    kv_len = past + q_len
    if attention_mask is None:
        allowed = causal_mask(q_len, kv_len, past, device)[None, None]
    elif attention_mask.dim() == 2:
        if attention_mask.shape[-1] != kv_len:
            raise ValueError(
                f"attention_mask: padding mask covers {attention_mask.shape[-1]} slots, "
                f"expected past + current = {kv_len}"
            )
        allowed = never_empty(causal_mask(q_len, kv_len, past, device)[None, None] & padding_allowed(attention_mask), past)
    else:
        allowed = attention_mask.bool()
        if allowed.dim() == 3:
            allowed = allowed[:, None]
        if allowed.dim() != 4 or tuple(allowed.shape[-2:]) != (q_len, kv_len):
            raise ValueError(
                f"attention_mask: a boolean mask must be [batch, {q_len}, {kv_len}] (query x key slots), "
                f"got {list(attention_mask.shape)}"
            )
        allowed = never_empty(allowed, past)
    if bias is None:
        return allowed
    return bias[None].masked_fill(~allowed, float("-inf"))

