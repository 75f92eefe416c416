"""Which position scheme a config uses, built from its ``[position]`` section."""

from __future__ import annotations

from torch import nn

from ..blocks.alibi import Alibi
from ..blocks.rope import RotaryEmbedding
from ..blocks.rope_2d import GLM2DRotaryEmbedding
from ..config import Config


def build_rope(cfg: Config) -> RotaryEmbedding:
    p = cfg.position
    return RotaryEmbedding(
        cfg.rotary_dim,
        theta=p.theta,
        layout=p.layout,
        scaling=p.scaling,
        fp16_frequencies=p.fp16_frequencies,
    )


def build_alibi(cfg: Config) -> Alibi:
    return Alibi(cfg.n_heads)


def build_glm2d(cfg: Config) -> nn.Module:
    p = cfg.position
    return GLM2DRotaryEmbedding(cfg.head_dim, theta=p.theta, fp16_frequencies=p.fp16_frequencies)


POSITION_KINDS = {
    "rope": build_rope,
    "alibi": build_alibi,
    "glm2d": build_glm2d,
    "none": lambda cfg: None,
}
"""``[position] kind`` -> builder (None: no positional signal at all)."""
