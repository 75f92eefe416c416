"""Fast form of ``blocks.masks.AttentionMask``: no mask matrix where SDPA needs none.

The reference gives SDPA a boolean (or biased float) [q, kv] matrix always.
SDPA's CPU kernels are faster without one: ``is_causal=True`` lets them skip
the upper triangle, and a single decoding query at the last slot sees every
key, so it needs no mask at all. Cases (no padding, no explicit matrix):

    no bias, no cache             mask None, is_causal=True
    no bias, one query at the end mask None
    ALiBi, one query at the end   the bias itself (nothing to hide)
    otherwise                     the reference's matrix

Equal: a hidden key contributes exp(-inf) = 0 to the softmax either way, and
the visible keys' scores are the same numbers; only SDPA's blocking (the order
of its sums) can differ (relative error about kv * eps_32).

Measured: see ``fast/__init__.py`` (FORMS_MEASURED).
"""

from __future__ import annotations

import torch

from ..blocks.masks import AttentionMask, build_mask


class FastAttentionMask(AttentionMask):
    reference = AttentionMask

    def forward(
        self,
        q_len: int,
        past: int,
        attention_mask: torch.Tensor | None,
        bias: torch.Tensor | None = None,
        device: torch.device | None = None,
    ) -> tuple[torch.Tensor | None, bool]:
        no_padding = attention_mask is None or (attention_mask.dim() == 2 and bool(attention_mask.bool().all()))
        if attention_mask is not None and attention_mask.dim() == 2 and attention_mask.shape[-1] != past + q_len:
            no_padding = False  # let the reference raise its error
        if no_padding:
            last_query_only = q_len == 1
            if bias is None and past == 0:
                return None, q_len > 1
            if bias is None and last_query_only:
                return None, False
            if last_query_only:
                return bias.unsqueeze(0), False  # [1, heads, 1, kv]: SDPA's CPU kernel is slower on 3-D masks
        return build_mask(q_len, past, attention_mask, bias=bias, device=device), False
