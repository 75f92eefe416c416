"""What ``CausalLM.forward`` accepts, checked before any work: a bad argument is an
``InputError`` naming the argument and the rule, never an ``IndexError`` from the
embedding or a silently different computation.

input_ids       integer ``[batch >= 1, seq >= 1]``, every id in [0, vocab_size)
attention_mask  ``[batch, past + seq]`` padding of 0/1 (bool or integer; 1 = keep), or a
                boolean ``[batch, seq, past + seq]`` / ``[batch, 1, seq, past + seq]``
                matrix (True = may attend). The batch must equal input_ids' (no broadcast
                of a batch-1 mask). Float masks are refused: an additive mask (0 = attend,
                -inf = not) read as 0/1 would mean the opposite, so the caller says
                which it is (``keep = additive == 0``).
position_ids    integer, >= 0, ``[batch, seq]`` (``[batch, 2, seq]`` also for glm2d).
                RoPE kinds read them. ALiBi's bias depends on distances only, taken
                between cache slots: position_ids that step by 1 between consecutive
                real tokens (any offset; ``cumsum(mask) - 1`` as Hugging Face makes them)
                give exactly those distances and are accepted; any other position_ids
                could not be honoured and are refused. ``none`` has no positions:
                position_ids change nothing there.
cache           a ``KVCache`` holding the same batch size as input_ids.
logits_to_keep  an int >= 0 (0 = every position).
targets         integer ``[batch, seq]`` (as input_ids), every id in [0, vocab_size) or -100
                (no loss there); only with logits_to_keep = 0 (the loss covers every position).

Sequences past ``[model] max_seq_len``: no shipped position kind has a learned
table, so none of them has a hard limit. RoPE (and GLM's 2D RoPE) and ALiBi
extrapolate to unseen positions, usually with a quality loss, so the first
forward past max_seq_len of each config warns once (``LongSequenceWarning``);
a kind with learned absolute positions would have to refuse instead.

Cost: shape and dtype checks are Python attribute reads. The value checks
(ids in range, mask of 0/1, positions >= 0) read a reduction back from the
device, one per tensor; ``generate`` checks its inputs once and runs its decode
loop under ``trusted_inputs()``, which skips them, so a decode step pays no
host sync for validation.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings

import torch

from ..blocks.next_token_loss import IGNORE_INDEX
from ..errors import InputError

_TRUSTED = contextvars.ContextVar("archzoo_trusted_inputs", default=False)
_WARNED: set[tuple[str, int]] = set()

POSITION_READERS = ("rope", "glm2d")
"""``[position] kind``s whose blocks read position_ids."""


class LongSequenceWarning(UserWarning):
    """A forward ran past the config's max_seq_len (positions extrapolate)."""


@contextlib.contextmanager
def trusted_inputs():
    """Inside, forward skips the value checks that need a host sync (inputs made by archzoo itself)."""
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def _is_integer(t: torch.Tensor) -> bool:
    return not t.dtype.is_floating_point and not t.dtype.is_complex and t.dtype != torch.bool


def _tensor(name: str, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name}: must be a torch.Tensor, got {type(value).__name__}")
    return value


def check_forward_inputs(
    cfg,
    input_ids,
    attention_mask,
    position_ids,
    cache,
    logits_to_keep,
    past: int,
    targets=None,
) -> None:
    """Raise ``InputError`` for the first broken rule (see the module docstring)."""
    ids = _tensor("input_ids", input_ids)
    if not _is_integer(ids):
        raise InputError(f"input_ids: must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 2 or ids.shape[0] == 0 or ids.shape[1] == 0:
        raise InputError(f"input_ids: must be [batch >= 1, seq >= 1], got shape {list(ids.shape)}")
    batch, seq = ids.shape
    if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
        raise InputError(f"logits_to_keep: must be an int >= 0 (0 = all positions), got {logits_to_keep!r}")
    if cache is not None:
        held = next((b.shape[0] for b in cache.layers[0].buffers.values()), None) if cache.layers else None
        if held is not None and held != batch:
            raise InputError(f"cache: holds a batch of {held}, input_ids has {batch}; start a new cache (new_cache)")
    trusted = _TRUSTED.get()
    if attention_mask is not None:
        _check_mask(_tensor("attention_mask", attention_mask), batch, seq, past, trusted)
    kind = cfg.position.kind
    if position_ids is not None:
        positions = _tensor("position_ids", position_ids)
        if not _is_integer(positions):
            raise InputError(f"position_ids: must be integers, got dtype {positions.dtype}")
        shapes = [(batch, seq)] + ([(batch, 2, seq)] if kind == "glm2d" else [])
        if tuple(positions.shape) not in shapes:
            want = " or ".join(str(list(s)) for s in shapes)
            raise InputError(f"position_ids: must be {want} (as input_ids), got {list(positions.shape)}")
        if not trusted and positions.numel() and int(positions.min()) < 0:
            raise InputError(f"position_ids: must be >= 0, got {int(positions.min())}")
        if not trusted and kind == "alibi" and seq > 1:
            _check_alibi_positions(positions, attention_mask, past)
    if not trusted:
        low, high = (int(v) for v in torch.aminmax(ids))
        vocab = cfg.model.vocab_size
        if low < 0 or high >= vocab:
            bad = low if low < 0 else high
            raise InputError(f"input_ids: token id {bad} is outside the vocabulary [0, {vocab})")
    if targets is not None:
        _check_targets(cfg, _tensor("targets", targets), batch, seq, logits_to_keep, trusted)
    warn_past_max_seq_len(cfg, past + seq)


def _check_targets(cfg, targets: torch.Tensor, batch: int, seq: int, logits_to_keep: int, trusted: bool) -> None:
    if not _is_integer(targets):
        raise InputError(f"targets: must hold integer token ids (-100 = no loss), got dtype {targets.dtype}")
    if tuple(targets.shape) != (batch, seq):
        raise InputError(f"targets: must be [batch, seq] = {[batch, seq]} (as input_ids), got {list(targets.shape)}")
    if logits_to_keep:
        raise InputError("logits_to_keep: must be 0 with targets (the loss is over every position)")
    if not trusted:
        vocab, ids = cfg.model.vocab_size, targets.long()  # compared in int64: a uint8 / int8 vocab bound overflows
        bad = ids[(ids != IGNORE_INDEX) & ((ids < 0) | (ids >= vocab))]
        if bad.numel():
            raise InputError(f"targets: id {int(bad[0])} is neither in the vocabulary [0, {vocab}) nor -100 (no loss)")


def _check_alibi_positions(positions: torch.Tensor, attention_mask, past: int) -> None:
    """ALiBi measures distance in cache slots: consecutive real tokens must be 1 position apart."""
    steps = positions.diff(dim=-1) != 1
    if attention_mask is not None and attention_mask.dim() == 2:
        real = attention_mask[:, past:].bool()
        steps &= real[:, 1:] & real[:, :-1]
    if bool(steps.any()):
        raise InputError(
            "position_ids: ALiBi takes distances between cache slots, so consecutive real tokens must be "
            "1 position apart (as cumsum(attention_mask) - 1 gives); other positions cannot be honoured"
        )


def _check_mask(mask: torch.Tensor, batch: int, seq: int, past: int, trusted: bool) -> None:
    kv = past + seq
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise InputError(
            f"attention_mask: must be bool or integer 0/1 (1 = keep), got {mask.dtype}; a float mask is "
            "ambiguous (an additive 0 / -inf mask means the opposite): pass (additive == 0) for one"
        )
    if mask.dim() == 2:
        if tuple(mask.shape) != (batch, kv):
            raise InputError(
                f"attention_mask: a padding mask must be [batch, past + seq] = [{batch}, {kv}], got {list(mask.shape)}"
            )
        if not trusted and mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any()):
            raise InputError("attention_mask: padding values must be 0 or 1 (1 = keep)")
        return
    matrix = (batch, seq, kv) if mask.dim() == 3 else (batch, 1, seq, kv)
    if mask.dim() not in (3, 4) or tuple(mask.shape) != matrix:
        raise InputError(
            f"attention_mask: must be [batch, past + seq] padding or a [batch, seq, past + seq] matrix = "
            f"[{batch}, {seq}, {kv}], got {list(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise InputError(f"attention_mask: a [batch, seq, kv] matrix must be boolean (True = may attend), got {mask.dtype}")


def warn_past_max_seq_len(cfg, length: int) -> None:
    """Warn once per config when ``length`` tokens exceed its max_seq_len."""
    limit = cfg.model.max_seq_len
    if length <= limit or (cfg.name, limit) in _WARNED:
        return
    _WARNED.add((cfg.name, limit))
    how = {"rope": "RoPE extrapolates", "glm2d": "GLM's 2D RoPE extrapolates", "alibi": "ALiBi extrapolates"}.get(
        cfg.position.kind, "without positions nothing changes"
    )
    warnings.warn(
        f"{cfg.name}: {length} tokens exceed max_seq_len = {limit}; {how} to unseen positions, "
        "usually with a loss in quality (warned once per config)",
        LongSequenceWarning,
        stacklevel=4,
    )
