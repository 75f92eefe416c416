"""Multi-head latent attention (MLA; DeepSeek-AI 2024, "DeepSeek-V2", section 2.1).

Keys and values of all H heads are decompressed from one small latent per token,
and position enters through a separate RoPE key shared by all heads:

    c_t   = RMSNorm(W_DKV x_t)                         latent, width r = kv_lora_rank
    k_R,t = RoPE(W_KR x_t)                             shared rope key, width d_R = qk_rope_head_dim
    k_j,t = [W_UK,j c_t ; k_R,t]     v_j,t = W_UV,j c_t     per head j (widths d_n + d_R, d_v)
    q_j,t = [q_N,j,t ; RoPE(q_R,j,t)] = W_Q x_t        or W_UQ RMSNorm(W_DQ x_t) (q_lora_rank > 0)
    o_t   = W_O [softmax_j(q_j . k_j * s) v_j]_j

(W_DKV and W_KR are one matrix, ``kv_a_proj``; W_UK and W_UV are one matrix,
``kv_b_proj``.) Two ways to compute the same numbers:

naive     decompress K and V for every head, then ordinary attention. The cache
          holds the decompressed keys and values: H (d_n + d_R + d_v) numbers per
          token and layer (the reference code's "naive" mode).
absorbed  q_N . (W_UK c) = (W_UK^T q_N) . c, and W_O (sum p W_UV c) = W_O W_UV (sum p c):
          fold W_UK into the query and W_UV into the output, and attend with all
          heads over the cached latents [c ; k_R] directly. The cache holds only
          r + d_R numbers per token and layer (576 for DeepSeek-V2/V3, against
          128 x 320 = 40960 naive).

The softmax scale is 1/sqrt(d_n + d_R), times YaRN's m(factor, mscale_all_dim)^2
when the rope is YaRN-scaled (DeepSeek-V2/V3). The mode is a plain attribute,
``mla_mode``, that ``set_mla_mode(model, mode)`` switches on every layer.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .attention import AttentionContext, attend
from .cache import LayerCache
from .norm import RMSNorm

MLA_MODES = ("naive", "absorbed")  # the config's MLAMode literal
NAIVE_CACHE = ("k", "v")
ABSORBED_CACHE = ("latent",)


class MultiHeadLatentAttention(nn.Module):
    """MLA with ``q_proj`` (or ``q_a_proj``/``q_a_layernorm``/``q_b_proj``),
    ``kv_a_proj``, ``kv_a_layernorm``, ``kv_b_proj``, ``o_proj``."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        kv_lora_rank: int,
        qk_nope_head_dim: int,
        qk_rope_head_dim: int,
        v_head_dim: int,
        q_lora_rank: int = 0,
        norm_eps: float = 1e-6,
        softmax_scale: float | None = None,
        mla_mode: str = "absorbed",
    ):
        super().__init__()
        self.n_heads = n_heads
        self.kv_lora_rank, self.q_lora_rank = kv_lora_rank, q_lora_rank
        self.nope_dim, self.rope_dim, self.v_dim = qk_nope_head_dim, qk_rope_head_dim, v_head_dim
        qk_dim = qk_nope_head_dim + qk_rope_head_dim
        self.scale = softmax_scale if softmax_scale is not None else qk_dim**-0.5
        self.mla_mode = mla_mode
        self.low_rank_query = bool(q_lora_rank)  # a plain flag: hasattr on a module raises inside
        if q_lora_rank:
            self.q_a_proj = nn.Linear(d_model, q_lora_rank, bias=False)
            self.q_a_layernorm = RMSNorm(q_lora_rank, norm_eps)
            self.q_b_proj = nn.Linear(q_lora_rank, n_heads * qk_dim, bias=False)
        else:
            self.q_proj = nn.Linear(d_model, n_heads * qk_dim, bias=False)
        self.kv_a_proj = nn.Linear(d_model, kv_lora_rank + qk_rope_head_dim, bias=False)
        self.kv_a_layernorm = RMSNorm(kv_lora_rank, norm_eps)
        self.kv_b_proj = nn.Linear(kv_lora_rank, n_heads * (qk_nope_head_dim + v_head_dim), bias=False)
        self.o_proj = nn.Linear(n_heads * v_head_dim, d_model, bias=False)

    # ---- what one token costs (``inspect/`` reads these off the built block) ----
    def kv_values_per_token(self) -> int:
        """Numbers one token stores in this layer's cache: r + d_R absorbed, H (d_n + d_R + d_v) naive."""
        if self.mla_mode == "absorbed":
            return self.kv_lora_rank + self.rope_dim
        return self.n_heads * (self.nope_dim + self.rope_dim + self.v_dim)

    def score_widths(self) -> tuple[int, int]:
        """(d_qk, d_v) over the heads in the decompressed (training) form: H (d_n + d_R), H d_v."""
        return self.n_heads * (self.nope_dim + self.rope_dim), self.n_heads * self.v_dim

    def activation_values(self) -> int:
        """Values per token kept for the backward pass past the input: the query and key/value
        latents before and after their norms (2 r_q + 2 r + d_R), then the decompressed Q, K
        (H (d_n + d_R) each), V and the o_proj input (H d_v each)."""
        latents = 2 * self.q_lora_rank + 2 * self.kv_lora_rank + self.rope_dim
        qk = self.nope_dim + self.rope_dim
        return latents + 2 * self.n_heads * qk + 2 * self.n_heads * self.v_dim

    @property
    def mla_mode(self) -> str:
        return self._mla_mode

    @mla_mode.setter
    def mla_mode(self, mode: str) -> None:
        if mode not in MLA_MODES:
            raise ValueError(f"mla_mode must be one of {MLA_MODES}, got {mode!r}")
        self._mla_mode = mode

    # ---- shared projections ------------------------------------------------
    def queries(self, x: torch.Tensor, ctx: AttentionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(q_nope ``[b, H, s, d_n]``, rotated q_rope ``[b, H, s, d_R]``)."""
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.low_rank_query else self.q_proj(x)
        q = rearrange(q, "b s (h d) -> b h s d", h=self.n_heads)
        q_nope, q_rope = q.split([self.nope_dim, self.rope_dim], dim=-1)
        return q_nope, ctx.rotation.apply(q_rope)

    def latents(self, x: torch.Tensor, ctx: AttentionContext) -> tuple[torch.Tensor, torch.Tensor]:
        """(normed latent c ``[b, 1, s, r]``, rotated shared rope key ``[b, 1, s, d_R]``)."""
        kv = rearrange(self.kv_a_proj(x), "b s d -> b 1 s d")
        latent, k_rope = kv.split([self.kv_lora_rank, self.rope_dim], dim=-1)
        return self.kv_a_layernorm(latent), ctx.rotation.apply(k_rope)

    def up_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK ``[H, d_n, r]`` and W_UV ``[H, d_v, r]``: views of ``kv_b_proj.weight``."""
        w = rearrange(self.kv_b_proj.weight, "(h d) r -> h d r", h=self.n_heads)
        return w.split([self.nope_dim, self.v_dim], dim=1)

    def forward(self, x: torch.Tensor, ctx: AttentionContext, cache: LayerCache | None = None) -> torch.Tensor:
        if cache is not None:
            check_cache_mode(cache, self.mla_mode)
        q_nope, q_rope = self.queries(x, ctx)
        latent, k_rope = self.latents(x, ctx)
        if self.mla_mode == "naive":
            out = self.attend_naive(q_nope, q_rope, latent, k_rope, ctx, cache)
        else:
            out = self.attend_absorbed(q_nope, q_rope, latent, k_rope, ctx, cache)
        return self.o_proj(rearrange(out, "b h s d -> b s (h d)"))

    # ---- the two modes ------------------------------------------------------
    def attend_naive(self, q_nope, q_rope, latent, k_rope, ctx, cache) -> torch.Tensor:
        """Decompress per-head K, V; cache them (``k``, ``v``); attend. Returns ``[b, H, s, d_v]``."""
        kv = rearrange(self.kv_b_proj(latent), "b 1 s (h d) -> b h s d", h=self.n_heads)
        k_nope, v = kv.split([self.nope_dim, self.v_dim], dim=-1)
        k = torch.cat((k_nope, k_rope.expand(-1, self.n_heads, -1, -1)), dim=-1)
        q = torch.cat((q_nope, q_rope), dim=-1)
        if cache is not None:
            k = cache.append("k", k, ctx.past)
            v = cache.append("v", v, ctx.past)
        return self.attend(q, k, v, ctx)

    def attend_absorbed(self, q_nope, q_rope, latent, k_rope, ctx, cache) -> torch.Tensor:
        """Attend over [c ; k_R] with W_UK folded into q and W_UV into the output.

        The cache holds one tensor, ``latent`` ``[b, 1, slots, r + d_R]``: it is
        the key of every head as is, and its first r dims are the value. So this
        is multi-query attention with one kv head.
        """
        w_uk, w_uv = self.up_weights()
        q = torch.cat((torch.einsum("bhsn,hnr->bhsr", q_nope, w_uk), q_rope), dim=-1)  # W_UK^T q_N
        keys = torch.cat((latent, k_rope), dim=-1)
        if cache is not None:
            keys = cache.append("latent", keys, ctx.past)
        out_latent = self.attend(q, keys, keys[..., : self.kv_lora_rank], ctx)  # sum_t p_t c_t
        return torch.einsum("bhsr,hvr->bhsv", out_latent, w_uv)  # W_UV (sum_t p_t c_t)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """softmax(q K^T s + B) V, in either mode; a fast form may compute it in another dtype."""
        return attend(q, k, v, ctx, self.scale)

    def extra_repr(self) -> str:
        return f"heads={self.n_heads}, kv_lora_rank={self.kv_lora_rank}, mla_mode={self.mla_mode}"


def check_cache_mode(cache: LayerCache, mode: str) -> None:
    """A cache filled in one mode cannot be continued in the other (different contents)."""
    wanted = NAIVE_CACHE if mode == "naive" else ABSORBED_CACHE
    other = [name for name in cache.buffers if name not in wanted]
    if other:
        raise ValueError(
            f"mla_mode={mode!r}, but this KV cache was filled in the other mode (holds {other}); "
            "start a new cache after set_mla_mode"
        )


def set_mla_mode(model: nn.Module, mode: str) -> int:
    """Switch every MLA layer of ``model`` to ``naive`` or ``absorbed``; returns how many layers."""
    layers = [m for m in model.modules() if isinstance(m, MultiHeadLatentAttention)]
    for layer in layers:
        layer.mla_mode = mode
    return len(layers)

