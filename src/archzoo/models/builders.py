"""Config -> blocks: the one layer that reads config sections to pick and size blocks.

The blocks themselves take explicit arguments and know what they cost
(``kv_values_per_token``, ``score_widths``, ``activation_values`` on the
attention blocks); ``inspect/`` reads those off a block built here on the
``meta`` device. A new attention kind is its block file, its fields in
``[attention]`` (``config/sections.py``, ``config/validate.py``) and one row of
``ATTENTION_KINDS``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..blocks.alibi import Alibi
from ..blocks.attention import Attention
from ..blocks.mla import MultiHeadLatentAttention
from ..blocks.mlp import MLP_KINDS
from ..blocks.moe import MoE
from ..blocks.norm import NORM_KINDS
from ..blocks.rope import RotaryEmbedding
from ..blocks.rope_2d import GLM2DRotaryEmbedding
from ..blocks.rope_scaling import yarn_softmax_factor
from ..config import Config, LayerPlan


def build_norm(cfg: Config) -> nn.Module:
    return NORM_KINDS[cfg.norm.kind](cfg.model.d_model, cfg.norm.eps)


# ---- attention -------------------------------------------------------------------------
def build_mha(cfg: Config) -> Attention:
    a = cfg.attention
    return Attention(
        cfg.model.d_model,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        qkv_bias=a.qkv_bias,
        o_bias=a.o_bias,
        qk_norm=a.qk_norm,
        norm_eps=cfg.norm.eps,
        softmax_scale=cfg.softmax_scale,
    )


def build_mla(cfg: Config) -> MultiHeadLatentAttention:
    a = cfg.attention
    return MultiHeadLatentAttention(
        cfg.model.d_model,
        a.n_heads,
        kv_lora_rank=a.kv_lora_rank,
        qk_nope_head_dim=a.qk_nope_head_dim,
        qk_rope_head_dim=a.qk_rope_head_dim,
        v_head_dim=a.v_head_dim,
        q_lora_rank=a.q_lora_rank,
        norm_eps=cfg.norm.eps,
        softmax_scale=cfg.softmax_scale * yarn_softmax_factor(cfg.position.scaling),
        mla_mode=a.mla_mode,
    )


ATTENTION_KINDS = {"mha": build_mha, "mla": build_mla}
"""``[attention] kind`` -> block builder; a test checks the keys against the ``AttentionKind`` literal."""


def build_attention(cfg: Config, plan: LayerPlan) -> nn.Module:
    return ATTENTION_KINDS[plan.attention](cfg)


def attention_on_meta(cfg: Config) -> nn.Module:
    """The config's attention block built on ``meta`` (nothing allocated), to read its costs off."""
    with torch.device("meta"):
        return ATTENTION_KINDS[cfg.attention.kind](cfg)


# ---- feed-forward ----------------------------------------------------------------------
def build_dense_mlp(cfg: Config) -> nn.Module:
    m = cfg.mlp
    return MLP_KINDS[m.kind](cfg.model.d_model, cfg.mlp_hidden, bias=m.bias, gelu_approximate=m.gelu_approximate)


def build_moe(cfg: Config) -> MoE:
    m = cfg.moe
    return MoE(
        cfg.model.d_model,
        n_experts=m.n_experts,
        top_k=m.top_k,
        expert_hidden=m.expert_hidden,
        shared_hidden=m.shared_width,
        shared_gate=m.shared_gate,
        aux_loss_coef=m.aux_loss_coef,
        bias_update_rate=m.bias_update_rate,
        scoring=m.scoring,
        normalize_top_k=m.normalize_top_k,
        n_groups=m.n_groups,
        topk_groups=m.topk_groups,
        group_score=m.group_score,
        routed_scaling_factor=m.routed_scaling_factor,
        correction_bias=m.correction_bias,
    )


FEEDFORWARD_KINDS = {"dense": build_dense_mlp, "moe": build_moe}
"""``LayerPlan.mlp`` -> block builder."""


def build_feedforward(cfg: Config, plan: LayerPlan) -> nn.Module:
    return FEEDFORWARD_KINDS[plan.mlp](cfg)


# ---- positions -------------------------------------------------------------------------
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


def build_glm2d(cfg: Config) -> GLM2DRotaryEmbedding:
    p = cfg.position
    return GLM2DRotaryEmbedding(cfg.head_dim, theta=p.theta, fp16_frequencies=p.fp16_frequencies)


POSITION_KINDS = {
    "rope": build_rope,
    "alibi": build_alibi,
    "glm2d": build_glm2d,
    "none": lambda cfg: None,
}
"""``[position] kind`` -> builder (None: no positional signal at all)."""
