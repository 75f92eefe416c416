"""Weight conversion as data: a closed set of rules, each run in both directions.

A family's table is a list of rules. Loading moves every checkpoint tensor
through the first rule that matches its key; saving runs the same rules
backwards. A key that no rule claims is an error listing the keys, on either
side, so nothing is ever dropped by accident.

Patterns name key parts with ``{placeholders}``: ``model.layers.{i}.mlp.{p}``
matches ``model.layers.3.mlp.up_proj.weight`` with i = "3", p = "up_proj.weight".

Rules:
    Rename        one tensor, new name
    Drop          checkpoint tensors that carry no parameter (e.g. cached ``inv_freq``)
    SplitFused    one checkpoint tensor <-> several of ours (fused QKV, fused gate/up)
    StackExperts  one tensor per expert in the checkpoint <-> one stacked [n_experts, ...] tensor
    StackFusedExperts  several per-expert projections (gate, up) <-> one stacked tensor with
                  the parts concatenated along dim 1 ([n_experts, gate rows + up rows, d])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from ...config import Config
from ...errors import CheckpointError

State = dict[str, torch.Tensor]


class WeightMappingError(CheckpointError):
    """Checkpoint and model keys do not correspond; the message lists the keys (on one line: the CLI prints one).

    A ``CheckpointError`` (so a ``ValueError``), not a ``KeyError``: KeyError quotes its message
    on one line, which hides the key list."""

    def __init__(self, what: str, keys: Sequence[str]):
        self.what, self.keys = what, list(keys)
        shown = ", ".join(sorted(keys)[:8])
        more = f", ... and {len(keys) - 8} more" if len(keys) > 8 else ""
        super().__init__(f"{what} ({len(keys)}): {shown}{more}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern:
    parts = re.split(r"(\{\w+\})", pattern)
    body = "".join(f"(?P<{p[1:-1]}>.+?)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(f"^{body}$")


def _matches(state: State, pattern: str) -> list[tuple[str, dict[str, str]]]:
    regex = _regex(pattern)
    found = []
    for key in list(state):
        m = regex.match(key)
        if m:
            found.append((key, m.groupdict()))
    return found


@dataclass(frozen=True)
class Rename:
    """``hf`` <-> ``ours``, same tensor."""

    hf: str
    ours: str

    def load(self, src: State, dst: State, cfg: Config) -> None:
        for key, fields in _matches(src, self.hf):
            dst[self.ours.format(**fields)] = src.pop(key)

    def save(self, src: State, dst: State, cfg: Config) -> None:
        for key, fields in _matches(src, self.ours):
            dst[self.hf.format(**fields)] = src.pop(key)


@dataclass(frozen=True)
class Drop:
    """Checkpoint keys that hold no parameter of ours; never written on save.

    ``only_if_any``: drop the matched keys only if one of them contains one of
    these names (the marker tensors of what is dropped); if keys match but none
    has a marker, they are not what this rule drops: ``WeightMappingError``
    with ``otherwise`` as the message."""

    hf: str
    only_if_any: tuple[str, ...] = ()
    otherwise: str = ""

    def load(self, src: State, dst: State, cfg: Config) -> None:
        matched = [key for key, _ in _matches(src, self.hf)]
        if self.only_if_any and matched and not any(m in key for key in matched for m in self.only_if_any):
            raise WeightMappingError(self.otherwise, matched)
        for key in matched:
            del src[key]

    def save(self, src: State, dst: State, cfg: Config) -> None:
        pass


@dataclass(frozen=True)
class SplitFused:
    """One checkpoint tensor <-> several of ours. ``split(t, cfg)`` returns the
    parts in the order of ``ours``; ``fuse(parts, cfg)`` is its inverse."""

    hf: str
    ours: tuple[str, ...]
    split: Callable[[torch.Tensor, Config], Sequence[torch.Tensor]]
    fuse: Callable[[Sequence[torch.Tensor], Config], torch.Tensor]

    def load(self, src: State, dst: State, cfg: Config) -> None:
        for key, fields in _matches(src, self.hf):
            parts = self.split(src.pop(key), cfg)
            for pattern, part in zip(self.ours, parts, strict=True):
                dst[pattern.format(**fields)] = part.contiguous()

    def save(self, src: State, dst: State, cfg: Config) -> None:
        for _key, fields in _matches(src, self.ours[0]):
            names = [pattern.format(**fields) for pattern in self.ours]
            missing = [n for n in names if n not in src]
            if missing:
                raise WeightMappingError("parts missing to fuse " + self.hf.format(**fields), missing)
            dst[self.hf.format(**fields)] = self.fuse([src.pop(n) for n in names], cfg)


@dataclass(frozen=True)
class StackExperts:
    """``hf`` has one key per expert (an ``{e}`` placeholder); ``ours`` one stacked tensor."""

    hf: str
    ours: str
    n_experts: Callable[[Config], int]

    def load(self, src: State, dst: State, cfg: Config) -> None:
        groups: dict[tuple, dict[int, str]] = {}
        for key, fields in _matches(src, self.hf):
            expert = int(fields.pop("e"))
            groups.setdefault(tuple(sorted(fields.items())), {})[expert] = key
        n = self.n_experts(cfg)
        for fields, keys in groups.items():
            if sorted(keys) != list(range(n)):
                absent = [self.hf.format(e=e, **dict(fields)) for e in range(n) if e not in keys]
                raise WeightMappingError(f"experts missing (config says {n})", absent or list(keys.values()))
            stacked = torch.stack([src.pop(keys[e]) for e in range(n)])
            dst[self.ours.format(**dict(fields))] = stacked

    def save(self, src: State, dst: State, cfg: Config) -> None:
        for key, fields in _matches(src, self.ours):
            stacked = src.pop(key)
            for e, tensor in enumerate(stacked.unbind(0)):
                dst[self.hf.format(e=e, **fields)] = tensor.contiguous()


@dataclass(frozen=True)
class StackFusedExperts:
    """Per-expert keys of several projections <-> one stacked tensor whose dim 1 holds
    the parts in order: ``StackExperts`` on each part, then a concatenation (and back)."""

    hf_parts: tuple[str, ...]
    ours: str
    n_experts: Callable[[Config], int]

    def load(self, src: State, dst: State, cfg: Config) -> None:
        stacked: list[State] = []
        for part in self.hf_parts:
            stacked.append({})
            StackExperts(part, self.ours, self.n_experts).load(src, stacked[-1], cfg)
        for key in set().union(*stacked):
            missing = [part for part, found in zip(self.hf_parts, stacked) if key not in found]
            if missing:
                raise WeightMappingError(f"parts missing to fuse {key}", missing)
            dst[key] = torch.cat([found[key] for found in stacked], dim=1)

    def save(self, src: State, dst: State, cfg: Config) -> None:
        for key, _ in _matches(src, self.ours):
            pieces = src.pop(key).chunk(len(self.hf_parts), dim=1)
            for part, piece in zip(self.hf_parts, pieces):
                StackExperts(part, self.ours, self.n_experts).save({key: piece}, dst, cfg)


Rule = Rename | Drop | SplitFused | StackExperts | StackFusedExperts


def hf_to_ours(state: State, rules: Sequence[Rule], cfg: Config) -> State:
    """Checkpoint tensors -> our names; every checkpoint key must be claimed by a rule."""
    src, dst = dict(state), {}
    for rule in rules:
        rule.load(src, dst, cfg)
    if src:
        raise WeightMappingError("checkpoint keys no rule of this architecture maps", list(src))
    return dst


def ours_to_hf(state: State, rules: Sequence[Rule], cfg: Config) -> State:
    """Our tensors -> checkpoint names; every key of ours must be claimed by a rule."""
    src, dst = dict(state), {}
    for rule in rules:
        rule.save(src, dst, cfg)
    if src:
        raise WeightMappingError("model keys no rule of this architecture maps", list(src))
    return dst


# ---- split / fuse helpers shared by several families --------------------------


def split_per_head(t: torch.Tensor, n_heads: int, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Rows laid out per head, [head_0: part_0 | part_1 | ...][head_1: ...] (BLOOM, ChatGLM-6B QKV)."""
    grouped = t.reshape(n_heads, sum(sizes), *t.shape[1:])
    return [p.reshape(n_heads * s, *t.shape[1:]) for p, s in zip(grouped.split(list(sizes), dim=1), sizes)]


def fuse_per_head(parts: Sequence[torch.Tensor], n_heads: int) -> torch.Tensor:
    """Inverse of ``split_per_head``."""
    grouped = [p.reshape(n_heads, -1, *p.shape[1:]) for p in parts]
    fused = torch.cat(grouped, dim=1)
    return fused.reshape(-1, *parts[0].shape[1:])


def split_blocks(t: torch.Tensor, sizes: Sequence[int]) -> list[torch.Tensor]:
    """Rows laid out as contiguous blocks [part_0 | part_1 | ...] (ChatGLM2 QKV, fused gate/up)."""
    return list(t.split(list(sizes), dim=0))


def fuse_blocks(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat(list(parts), dim=0)


QKV_PARTS = ("layers.{i}.attn.q_proj.{p}", "layers.{i}.attn.k_proj.{p}", "layers.{i}.attn.v_proj.{p}")


def _split_qkv_per_head(t: torch.Tensor, cfg: Config) -> list[torch.Tensor]:
    return split_per_head(t, cfg.n_heads, [cfg.head_dim] * 3)


def _fuse_qkv_per_head(parts: Sequence[torch.Tensor], cfg: Config) -> torch.Tensor:
    return fuse_per_head(parts, cfg.n_heads)


def _split_qkv_blocks(t: torch.Tensor, cfg: Config) -> list[torch.Tensor]:
    kv = cfg.n_kv_heads * cfg.head_dim
    return split_blocks(t, [cfg.n_heads * cfg.head_dim, kv, kv])


def _fuse_qkv_blocks(parts: Sequence[torch.Tensor], cfg: Config) -> torch.Tensor:
    return fuse_blocks(parts)


def fused_qkv_rule(hf: str, layout: str) -> SplitFused:
    """One fused q/k/v tensor ``hf`` (with ``{i}`` and ``{p}``) <-> our ``q_proj``, ``k_proj``, ``v_proj``.

    layout ``per_head``: rows [q_0 k_0 v_0 | q_1 k_1 v_1 | ...], one group per head (BLOOM,
    ChatGLM-6B); ``blocks``: rows [Q | K | V], K and V n_kv_heads x head_dim wide
    (ChatGLM2, Baichuan's W_pack, Qwen v1's c_attn).
    """
    split, fuse = {"per_head": (_split_qkv_per_head, _fuse_qkv_per_head), "blocks": (_split_qkv_blocks, _fuse_qkv_blocks)}[layout]
    return SplitFused(hf, QKV_PARTS, split, fuse)


def match_key(pattern: str, key: str) -> dict[str, str] | None:
    """The placeholder values if ``key`` matches ``pattern`` (e.g. ``{"i": "3", "p": "q_proj.weight"}``), else None."""
    m = _regex(pattern).match(key)
    return m.groupdict() if m else None
