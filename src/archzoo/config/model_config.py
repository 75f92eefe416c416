"""The whole-model config and the sizes derived from it (no torch)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .parse import REQUIRED_SECTIONS, parse_fields, section_to_dict
from .sections import (
    SECTIONS,
    AttentionKind,
    AttentionSection,
    MLPSection,
    ModelSection,
    MoESection,
    NormSection,
    PositionSection,
    TokensSection,
)
from .validate import validate


@dataclass(frozen=True)
class LayerPlan:
    """What one decoder layer is made of; ``archzoo show`` prints the list."""

    index: int
    attention: AttentionKind
    mlp: Literal["dense", "moe"]


@dataclass(frozen=True)
class Config:
    """A model, as one TOML file describes it. Build with ``load_config`` or ``Config.from_dict``."""

    name: str
    family: str
    model: ModelSection
    attention: AttentionSection
    norm: NormSection = field(default_factory=NormSection)
    position: PositionSection = field(default_factory=PositionSection)
    mlp: MLPSection = field(default_factory=MLPSection)
    moe: MoESection | None = None
    tokens: TokensSection = field(default_factory=TokensSection)
    source: str = ""
    description: str = ""
    path: str = ""  # the file it came from, for error messages; "" when built in code

    # ---- construction -------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> Config:
        """Parse and validate a TOML-shaped dict; raises ``ConfigError``."""
        config = cls(**parse_fields(data, source))
        validate(config, source)
        return config

    def to_dict(self) -> dict:
        """The TOML-shaped dict this config round-trips through (fields at their defaults omitted)."""
        out: dict[str, Any] = {"name": self.name, "family": self.family}
        for key in ("source", "description"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        for name in SECTIONS:
            section = getattr(self, name)
            if section is None:
                continue
            table = section_to_dict(section)
            if table or name in REQUIRED_SECTIONS:
                out[name] = table
        return out

    def replace(self, **sections) -> Config:
        """A copy with whole sections or top-level fields replaced, validated again."""
        new = replace(self, **sections)
        validate(new, self.path or f"<{self.name}>")
        return new

    # ---- derived attention sizes ---------------------------------------
    @property
    def n_heads(self) -> int:
        return self.attention.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: n_heads for MHA, 1 for MQA, in between for GQA."""
        return self.attention.n_kv_heads or self.attention.n_heads

    @property
    def head_dim(self) -> int:
        """Width of one query/key/value head (mha); d_model / n_heads unless set."""
        return self.attention.head_dim or self.model.d_model // self.attention.n_heads

    @property
    def qk_head_dim(self) -> int:
        """Width over which q.k is taken: head_dim, or nope + rope dims for MLA."""
        return self.attention.qk_width(self.head_dim)

    @property
    def softmax_scale(self) -> float:
        """Multiplier of q.k before the softmax, before any YaRN temperature."""
        return self.attention.softmax_scale or self.qk_head_dim**-0.5

    @property
    def rotary_dim(self) -> int:
        """Dims of a head that RoPE rotates: the MLA rope dims, or fraction x head_dim."""
        return self.attention.rotated_width(self.head_dim, self.position.rotary_fraction)

    # ---- derived MLP sizes ---------------------------------------------
    @property
    def mlp_hidden(self) -> int:
        """Dense MLP inner width: explicit, or LLaMA's multiple_of rule (Touvron et al. 2023)."""
        m = self.mlp
        if m.hidden is not None:
            return m.hidden
        hidden = int(2 * (4 * self.model.d_model) / 3)
        if m.ffn_dim_multiplier is not None:
            hidden = int(m.ffn_dim_multiplier * hidden)
        multiple = m.multiple_of or 1
        return multiple * math.ceil(hidden / multiple)

    # ---- wiring ----------------------------------------------------------
    @property
    def deepnorm_alpha(self) -> float:
        """DeepNorm residual scale; GLM-130B's rule (2N)^0.5 when unset."""
        return self.norm.deepnorm_alpha or math.sqrt(2 * self.model.n_layers)

    @property
    def deepnorm_beta(self) -> float:
        """DeepNorm init gain; GLM-130B's rule (2N)^-0.5 when unset."""
        return self.norm.deepnorm_beta or (2 * self.model.n_layers) ** -0.5

    @property
    def has_final_norm(self) -> bool:
        """Pre-norm stacks end in a norm; post-norm stacks already end normalised.

        ChatGLM-6B's deepnorm with residual_from_normed keeps a final norm (its
        ``final_layernorm`` is the post-norm of the last sublayer).
        """
        if self.norm.placement in ("pre", "sandwich"):
            return True
        return self.norm.residual_from_normed

    @functools.cached_property
    def layer_plan(self) -> tuple[LayerPlan, ...]:
        """Per-layer attention and MLP kind, with MoE dense layers expanded.

        Computed once per config (callers index it per parameter: ``count_params``)."""
        return tuple(
            LayerPlan(i, self.attention.kind, "moe" if self.is_moe_layer(i) else "dense")
            for i in range(self.model.n_layers)
        )

    def is_moe_layer(self, index: int) -> bool:
        """DeepSeek: layers >= first_dense_layers; Qwen-MoE: every sparse_step-th, minus dense_layers."""
        moe = self.moe
        if moe is None or index < moe.first_dense_layers or index in moe.dense_layers:
            return False
        return (index + 1) % moe.sparse_step == 0

    def blocks_summary(self) -> str:
        """A one-line description of the blocks, for ``archzoo list``."""
        attn = self.attention.describe(self.n_kv_heads)
        pos = self.position.kind
        if pos == "rope":
            frac = "" if self.position.rotary_fraction == 1 else f" {self.position.rotary_fraction:g}"
            pos = f"rope({self.position.layout}{frac})"
        parts = [f"{self.norm.kind}/{self.norm.placement}", attn, pos, self.mlp.kind]
        if self.moe is not None:
            parts.append(f"moe {self.moe.top_k}/{self.moe.n_experts}")
        if self.model.norm_head:
            parts.append("norm head")
        return ", ".join(parts)


__all__ = ["Config", "LayerPlan"]
