"""Config -> block constructors. The only place that reads config sections to
pick and size blocks; the blocks themselves take explicit arguments."""

from __future__ import annotations

from torch import nn

from ..blocks.attention import Attention
from ..blocks.mla import MultiHeadLatentAttention
from ..blocks.mlp import MLP_KINDS
from ..blocks.moe import MoE
from ..blocks.norm import NORM_KINDS
from ..config import Config, LayerPlan


def build_norm(cfg: Config) -> nn.Module:
    return NORM_KINDS[cfg.norm.kind](cfg.model.d_model, cfg.norm.eps)


def build_mha(cfg: Config) -> nn.Module:
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


def build_mla(cfg: Config) -> nn.Module:
    return MultiHeadLatentAttention.from_config(cfg)


def build_dense_mlp(cfg: Config) -> nn.Module:
    m = cfg.mlp
    return MLP_KINDS[m.kind](cfg.model.d_model, cfg.mlp_hidden, bias=m.bias, gelu_approximate=m.gelu_approximate)


def build_moe(cfg: Config) -> nn.Module:
    return MoE.from_config(cfg)


ATTENTION_BUILDERS = {"mha": build_mha, "mla": build_mla}
FEEDFORWARD_BUILDERS = {"dense": build_dense_mlp, "moe": build_moe}


def build_attention(cfg: Config, plan: LayerPlan) -> nn.Module:
    return ATTENTION_BUILDERS[plan.attention](cfg)


def build_feedforward(cfg: Config, plan: LayerPlan) -> nn.Module:
    return FEEDFORWARD_BUILDERS[plan.mlp](cfg)
