"""ChatGLM-6B's prefix-LM inference layout (THUDM/chatglm-6b, final hub code).

The prompt is ``p_1 ... p_m [gMASK] <sop>`` and the answer is generated after
``<sop>``. With c = index of the first ``<sop>`` (the context length) and
mask_position = index of the first ``[gMASK]`` (else the first ``[MASK]``):

    mask       query q may attend key k  iff  k < c  or  k <= q
               (prompt and [gMASK] bidirectional; <sop> and after causal)
    position   0, 1, ..., c - 1, then mask_position for <sop> and every
               generated token
    block      0 for the first c tokens, then 1, 2, 3, ... (<sop> = 1)

Incremental decoding: each new token gets (mask_position, previous block + 1)
and sees every cached key and itself (``next_prefix_lm_positions``).
This is GLM's generation objective with an empty target, minus the leading
``[CLS]``. Before hub commit 11c270c (2023-03-31) positions after ``[gMASK]``
continued linearly; the final code pins them, as here.

Left padding (as the tokenizer's ``_pad``): ids, positions and blocks are
computed on the unpadded tokens, pads get position 0 and block 0, and pad rows
and columns are masked out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PrefixLMInputs:
    """position_ids ``[(batch,) 2, L]``; attention_mask ``[(batch,) L, L]`` bool (True = may attend);
    context_length and mask_position per row (indices among the unpadded tokens)."""

    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    context_length: torch.Tensor
    mask_position: torch.Tensor


def _first_index(row: list[int], token: int) -> int | None:
    return row.index(token) if token in row else None


def prefix_lm_inputs(
    input_ids: torch.Tensor,
    *,
    gmask_id: int,
    mask_id: int,
    sop_id: int,
    padding_mask: torch.Tensor | None = None,
) -> PrefixLMInputs:
    """ChatGLM-6B position ids and mask for ``prompt [gMASK] <sop> generated...``.

    input_ids: ``[L]`` or ``[batch, L]``; padding_mask: same shape, 1 = real
    token (pads may sit anywhere, usually on the left).
    """
    single = input_ids.dim() == 1
    ids = input_ids[None] if single else input_ids
    if ids.dim() != 2:
        raise ValueError(f"input_ids must be [L] or [batch, L], got shape {list(input_ids.shape)}")
    keep = torch.ones_like(ids, dtype=torch.bool) if padding_mask is None else padding_mask.bool()
    if single and padding_mask is not None:
        keep = keep.reshape(1, -1)
    if keep.shape != ids.shape:
        raise ValueError(f"padding_mask must have the shape of input_ids {list(ids.shape)}, got {list(keep.shape)}")
    batch, length = ids.shape
    compact = keep.long().cumsum(-1) - 1  # index among the real tokens
    positions = torch.zeros(batch, 2, length, dtype=torch.long, device=ids.device)
    allowed = torch.zeros(batch, length, length, dtype=torch.bool, device=ids.device)
    contexts, masks = [], []
    for b in range(batch):
        real = ids[b][keep[b]].tolist()
        context = _first_index(real, sop_id)
        if context is None:
            raise ValueError(f"input_ids row {b}: no <sop> (sop_id={sop_id}); ChatGLM-6B needs prompt [gMASK] <sop>")
        mask_position = _first_index(real, gmask_id)
        if mask_position is None:
            mask_position = _first_index(real, mask_id)
        if mask_position is None:
            raise ValueError(f"input_ids row {b}: neither [gMASK] ({gmask_id}) nor [MASK] ({mask_id}) occurs")
        j = compact[b]
        generated = j >= context
        positions[b, 0] = torch.where(generated, torch.full_like(j, mask_position), j)
        positions[b, 1] = torch.where(generated, j - context + 1, torch.zeros_like(j))
        positions[b, :, ~keep[b]] = 0
        visible = (j[None, :] < context) | (j[None, :] <= j[:, None])
        allowed[b] = visible & keep[b][None, :] & keep[b][:, None]
        contexts.append(context)
        masks.append(mask_position)
    result = PrefixLMInputs(
        position_ids=positions,
        attention_mask=allowed,
        context_length=torch.tensor(contexts),
        mask_position=torch.tensor(masks),
    )
    if single:
        return PrefixLMInputs(positions[0], allowed[0], result.context_length[0], result.mask_position[0])
    return result


def next_prefix_lm_positions(position_ids: torch.Tensor) -> torch.Tensor:
    """The next decoded token's ``[(batch,) 2, 1]`` ids: (mask_position, last block + 1).

    Its mask row sees every cached key and itself, i.e. a plain padding mask
    over the cache.
    """
    last = position_ids[..., -1:].clone()
    last[..., 1, :] += 1
    return last
