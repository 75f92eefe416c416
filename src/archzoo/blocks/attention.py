"""Multi-head self-attention with grouped key/value heads.

    head_j = softmax(q_j K_g(j)^T * s + B) V_g(j),   out = W_o [head_1; ...; head_H]

with H query heads and G key/value heads, query head j reading kv head
g(j) = floor(j / (H / G)) (Ainslie et al. 2023, "GQA"). G = H is multi-head
attention (Vaswani et al. 2017), G = 1 multi-query attention (Shazeer 2019).
s = 1/sqrt(head_dim) unless set; B holds the causal/padding mask and ALiBi.

Options: biases on q, k, v (Qwen2, BLOOM, GLM-4) and on the output (BLOOM);
per-head RMSNorm on q and k before RoPE (Qwen3); head_dim independent of
d_model / n_heads (Qwen3). Computed by ``F.scaled_dot_product_attention``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..torch_version import TORCH_VERSION
from .cache import LayerCache
from .norm import RMSNorm
from .rope import Rotation


@dataclass
class AttentionContext:
    """Per-forward inputs shared by every layer: built once by the model."""

    mask: torch.Tensor  # added to the scores: bool (True = may attend) or float (-inf = hidden)
    rotation: Rotation | None = None
    past: int = 0  # slots already in the cache
    causal: bool = False  # mask is exactly causal_mask(q, past + q, past): a fast form may let SDPA make it


class Attention(nn.Module):
    """MHA / GQA / MQA; unfused ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        head_dim: int,
        *,
        qkv_bias: bool = False,
        o_bias: bool = False,
        qk_norm: bool = False,
        norm_eps: float = 1e-6,
        softmax_scale: float | None = None,
    ):
        super().__init__()
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads ({n_kv_heads}) must divide n_heads ({n_heads})")
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.scale = softmax_scale if softmax_scale is not None else head_dim**-0.5
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(n_heads * head_dim, d_model, bias=o_bias)
        self.q_norm = RMSNorm(head_dim, norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, norm_eps) if qk_norm else None

    # ---- what one token costs (``inspect/`` reads these off the built block) ----
    def kv_values_per_token(self) -> int:
        """Numbers one token stores in this layer's KV cache: K and V, 2 G d_h."""
        return 2 * self.n_kv_heads * self.head_dim

    def score_widths(self) -> tuple[int, int]:
        """(d_qk, d_v) over all query heads, H d_h each: q.K^T costs 2 n_ctx d_qk FLOPs per token,
        the weighted sum of V 2 n_ctx d_v (GQA/MQA share K and V, not the dot products)."""
        width = self.n_heads * self.head_dim
        return width, width

    def activation_values(self) -> int:
        """Values per token kept for the backward pass past the input (Korthikanti et al. 2022):
        Q (H d_h), K and V (G d_h each), the qk-norm inputs ((H + G) d_h) and the o_proj input (H d_h)."""
        hd = self.head_dim
        qk_norm = (self.n_heads + self.n_kv_heads) * hd if self.q_norm is not None else 0
        return self.n_heads * hd + 2 * self.n_kv_heads * hd + qk_norm + self.n_heads * hd

    def forward(self, x: torch.Tensor, ctx: AttentionContext, cache: LayerCache | None = None) -> torch.Tensor:
        q = rearrange(self.q_proj(x), "b s (h d) -> b h s d", h=self.n_heads)
        k = rearrange(self.k_proj(x), "b s (h d) -> b h s d", h=self.n_kv_heads)
        v = rearrange(self.v_proj(x), "b s (h d) -> b h s d", h=self.n_kv_heads)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if ctx.rotation is not None:
            q, k = ctx.rotation.apply(q), ctx.rotation.apply(k)
        if cache is not None:
            k = cache.append("k", k, ctx.past)
            v = cache.append("v", v, ctx.past)
        out = self.attend(q, k, v, ctx)
        return self.o_proj(rearrange(out, "b h s d -> b s (h d)"))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """softmax(q K^T s + B) V (``attend`` below); a fast form may compute it in another dtype."""
        return attend(q, k, v, ctx, self.scale)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext, scale: float) -> torch.Tensor:
    """softmax(q k^T * scale + mask) v over ``[batch, heads, seq, dim]``."""
    return sdpa(q, k, v, scale, attn_mask=ctx.mask)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, **mask) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with ``mask`` (``attn_mask=`` or ``is_causal=``); query head j
    reads kv head j // (H / G) for GQA/MQA (SDPA's ``enable_gqa``: the kv heads are shared, not copied)."""
    groups = q.shape[1] // k.shape[1]
    if groups > 1 and not SDPA_SHARES_KV_HEADS:
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    extra = {"enable_gqa": groups > 1} if SDPA_SHARES_KV_HEADS else {}
    return F.scaled_dot_product_attention(q, k, v, scale=scale, **mask, **extra)


# ``enable_gqa`` arrived in torch 2.5; on 2.4 the kv heads are repeated instead (same result).
SDPA_SHARES_KV_HEADS = TORCH_VERSION >= (2, 5)
