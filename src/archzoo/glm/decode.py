"""How ChatGLM-6B's prefix-LM decodes: the prompt's 2D positions and mask, then one step at a time.

``generate`` picks this scheme for ``[position] kind = "glm2d"`` (``DECODE_SCHEMES``
in ``generate.py``); the positions themselves are ``prefix_lm.py``'s.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from .prefix_lm import next_prefix_lm_positions, prefix_lm_inputs


def require_prompt_tokens(cfg) -> None:
    """InputError unless the config names the ids a glm2d prompt ends in ([gMASK] or [MASK], then <sop>)."""
    t = cfg.tokens
    if t.sop_id is None or (t.gmask_id is None and t.mask_id is None):
        raise InputError(
            f"{cfg.name}: [tokens] sop_id and gmask_id (or mask_id) must be set "
            "to decode with glm2d positions (the prompt ends in [gMASK] <sop>; in config.json: "
            "bos_token_id and gmask_token_id)"
        )


class GLMPrefixPositions:
    """ChatGLM-6B's prefix-LM decoding: 2D positions, bidirectional prompt up to ``<sop>``.

    The prompt's positions and mask come from ``prefix_lm_inputs`` (the token
    ids are the config's ``[tokens]``); each new token gets (mask position,
    previous block position + 1) and sees every real cached slot and itself.
    """

    def __init__(self, model: nn.Module):
        require_prompt_tokens(model.config)
        self.tokens = model.config.tokens

    @staticmethod
    def complete_prompt(ids: list[int], cfg) -> list[int]:
        """Append ``[gMASK] <sop>`` unless present, as ChatGLM-6B's tokenizer does."""
        require_prompt_tokens(cfg)
        t = cfg.tokens
        if t.sop_id in ids:
            return ids
        has_mask = t.gmask_id in ids or (t.mask_id is not None and t.mask_id in ids)
        return ids + ([] if has_mask else [t.gmask_id]) + [t.sop_id]

    def prefill(
        self, input_ids: torch.Tensor, keep: torch.Tensor | None, max_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tokens
        inputs = prefix_lm_inputs(input_ids, gmask_id=t.gmask_id, mask_id=t.mask_id, sop_id=t.sop_id, padding_mask=keep)
        batch, seq = input_ids.shape
        self.length = seq
        self.positions = inputs.position_ids[..., -1:]
        self.keep = None
        if keep is not None:
            self.keep = torch.ones(batch, max_len, dtype=torch.bool, device=input_ids.device)
            self.keep[:, :seq] = keep
        return inputs.position_ids, inputs.attention_mask

    def step(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.length += 1
        self.positions = next_prefix_lm_positions(self.positions)
        return self.positions, None if self.keep is None else self.keep[:, : self.length]
