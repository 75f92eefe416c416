"""Autoregressive decoding over the KV cache: greedy or sampled.

    x_{t+1} ~ softmax(logits(x_1..x_t) / T)     (restricted to the top-k / top-p tokens)
    x_{t+1} = argmax logits(x_1..x_t)            when T = 0 (greedy)

The prompt is run once (prefill) and fills the cache; each later step feeds
one token and reads the cached keys and values of all earlier ones, so a step
costs O(t) attention instead of a full O(t^2) forward (``blocks/cache.py``).

What the model is told about positions and visibility at each step depends on
the config's ``[position] kind`` only (``DECODE_SCHEMES`` at the end):

* ``rope``, ``alibi``, ``none``: 1-D positions. A left-padded row's first real
  token sits at position 0: positions are the running count of real tokens
  (``cumsum(attention_mask) - 1``, as Hugging Face ``generate`` does) and the
  padding mask grows by one kept slot per step.
* ``glm2d``: ChatGLM-6B's prefix-LM: the prompt (up to ``<sop>``) is
  bidirectional, and every new token gets position (mask position, previous
  block position + 1) (``glm/decode.py``).

``generate`` returns only the new tokens, ``[batch, new]``: the prompt is what
the caller passed in, and ``torch.cat((input_ids, new), 1)`` rebuilds Hugging
Face's prompt-plus-continuation layout when needed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .errors import InputError
from .fast import decoding_layout
from .glm.decode import GLMPrefixPositions
from .models.inputs import POSITION_READERS, check_forward_inputs, trusted_inputs, warn_past_max_seq_len


class LinearPositions:
    """1-D positions for rope / alibi / no-position models; padding as a ``[batch, slots]`` keep-mask."""

    def __init__(self, model: nn.Module):
        self.model = model

    @staticmethod
    def complete_prompt(ids: list[int], cfg) -> list[int]:
        """The prompt as this scheme expects it: unchanged."""
        return ids

    def prefill(
        self, input_ids: torch.Tensor, keep: torch.Tensor | None, max_len: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Position ids and attention mask for the prompt (``None``: the model's defaults)."""
        batch, seq = input_ids.shape
        self.length = seq
        if keep is None:
            self.keep = None
            self.next_position = None
            return None, None
        self.keep = torch.ones(batch, max_len, dtype=torch.bool, device=input_ids.device)
        self.keep[:, :seq] = keep
        positions = (keep.long().cumsum(-1) - 1).clamp(min=0)
        self.next_position = positions[:, -1:] + 1
        return positions, self.keep[:, :seq]

    def step(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Position ids and attention mask for the next single token."""
        self.length += 1
        if self.keep is None:
            return None, None
        positions = self.next_position
        self.next_position = positions + 1
        return positions, self.keep[:, : self.length]


def _check_arguments(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    eos_id: int | None,
) -> None:
    """Every argument once per call (the decode loop then runs under ``trusted_inputs``)."""
    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not whole(max_new_tokens) or max_new_tokens < 0:
        raise InputError(f"max_new_tokens: must be a whole number >= 0, got {max_new_tokens!r}")
    if not number(temperature) or temperature < 0:
        raise InputError(f"temperature: must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not whole(top_k) or top_k < 1):
        raise InputError(f"top_k: must be a whole number >= 1, got {top_k!r}")
    if top_p is not None and (not number(top_p) or not 0 < top_p <= 1):
        raise InputError(f"top_p: must be in (0, 1], got {top_p!r}")
    vocab = model.config.model.vocab_size
    if eos_id is not None and (not whole(eos_id) or not 0 <= eos_id < vocab):
        raise InputError(f"eos_id: must be a token id in [0, {vocab}), got {eos_id!r}")
    # input_ids (dtype, shape, ids in the vocabulary) and the mask's dtype, shape and 0/1 values
    check_forward_inputs(model.config, input_ids, attention_mask, None, None, 0, past=0)
    if attention_mask is not None:
        if attention_mask.dim() != 2:
            raise InputError(f"attention_mask: generate takes [batch, seq] padding, got {list(attention_mask.shape)}")
        keep = attention_mask.bool()
        if bool((keep[:, 1:] < keep[:, :-1]).any()):
            raise InputError("attention_mask: only left padding is supported (0s, then 1s, in every row)")
        if not bool(keep[:, -1].all()):
            raise InputError("attention_mask: every row needs at least one real token (the last slot must be 1)")
    warn_past_max_seq_len(model.config, input_ids.shape[1] + max_new_tokens)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k, then outside the smallest top-p nucleus.

    The nucleus keeps the most probable tokens whose cumulative probability,
    before adding each one, is below p (so at least one token always stays).
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs
        drop_sorted = before >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """``[batch, vocab]`` logits -> ``[batch]`` token ids (argmax when temperature is 0)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / temperature, top_k, top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    attention_mask: torch.Tensor | None = None,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    on_token: Callable[[torch.Tensor], bool | None] | None = None,
) -> torch.Tensor:
    """Continue each prompt by up to ``max_new_tokens`` tokens; returns only the new ids ``[batch, new]``.

    input_ids: ``[batch, seq]`` prompts; shorter prompts left-padded.
    attention_mask: ``[batch, seq]``, 1 = real token, 0 = left padding (None: no padding).
    temperature: 0 = greedy (argmax); > 0 divides the logits before sampling.
    top_k / top_p: sample only among the k most likely tokens / the smallest set
        whose probability reaches p (ignored when greedy).
    eos_id: a row that emits it is finished and keeps emitting ``eos_id``;
        decoding stops early once every row is finished, so ``new`` may be
        shorter than ``max_new_tokens``.
    generator: a ``torch.Generator`` for reproducible sampling.
    on_token: called with each step's new ids ``[batch]`` as soon as they are chosen (to stream
        text); when it returns True, decoding stops after that token (e.g. an end-of-turn token).
    """
    _check_arguments(model, input_ids, max_new_tokens, attention_mask, temperature, top_k, top_p, eos_id)
    with trusted_inputs():  # checked above; the prefill and every step are made here
        return _decode(model, input_ids, max_new_tokens, attention_mask, temperature, top_k, top_p, eos_id,
                       generator, on_token)


def _decode(model, input_ids, max_new_tokens, attention_mask, temperature, top_k, top_p, eos_id, generator, on_token):
    batch, seq = input_ids.shape
    if max_new_tokens == 0:
        return input_ids.new_empty(batch, 0)
    kind = model.config.position.kind
    scheme = DECODE_SCHEMES[kind](model)
    keep = attention_mask.bool() if attention_mask is not None and not bool(attention_mask.bool().all()) else None
    max_len = seq + max_new_tokens
    cache = model.new_cache(max_len)
    with decoding_layout(model):  # column-major weight copies while decoding (fast/linear.py); no-op otherwise
        positions, mask = scheme.prefill(input_ids, keep, max_len)
        reads_positions = kind in POSITION_READERS  # ALiBi and `none` take distances from cache slots
        logits = model(input_ids, mask, positions if reads_positions else None, cache, logits_to_keep=1)
        finished = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        new_tokens = []
        while True:
            token = next_token(logits[:, -1], temperature, top_k, top_p, generator)
            if eos_id is not None:
                token = token.masked_fill(finished, eos_id)
                finished |= token == eos_id
            new_tokens.append(token)
            stop = on_token is not None and bool(on_token(token))
            if stop or len(new_tokens) == max_new_tokens or (eos_id is not None and bool(finished.all())):
                break
            positions, mask = scheme.step()
            logits = model(token[:, None], mask, positions if reads_positions else None, cache, logits_to_keep=1)
        return torch.stack(new_tokens, dim=1)


DECODE_SCHEMES = {
    "rope": LinearPositions,
    "alibi": LinearPositions,
    "none": LinearPositions,
    "glm2d": GLMPrefixPositions,
}
"""``[position] kind`` -> how prompt and step positions/masks are made while decoding."""
