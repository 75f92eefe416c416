"""One block alone at a stated size: parameters, FLOPs and KV cache per token,
CPU time per call and output statistics, for ``archzoo compare --blocks``.

Every variant of a kind is built from the blocks' own constructors, seeded
the same way, and run on the same input ``[batch, seq_len, d_model]``.

    attention  mha, gqa, mqa (``Attention`` with n_kv_heads = n_heads, --n-kv-heads, 1),
               mla (``MultiHeadLatentAttention``, absorbed). All get RoPE on their rotary dims.
               FLOPs/token = 2 x projection weights + 2 seq_len (d_qk + d_v) (``flops.py``;
               MLA in its decompressed form). KV values/token are *measured* from the cache
               the block fills, next to the block's own formula (``kv_values_per_token``).
    mlp        gelu, swiglu, geglu at inner width --hidden (default 4 d). With iso_params the
               gated ones get round(2/3 hidden), so 3 d h' = 2 d h: the same parameter count
               (Shazeer 2020; LLaMA's 8d/3). FLOPs/token = 2 x weights (activations left out).
    norm       layernorm, rmsnorm. FLOPs/token counted elementwise: RMSNorm 4d (square, sum,
               scale, gain), LayerNorm 7d (mean, subtract, square, sum, scale, gain, bias).
    position   rope, alibi, none, each inside the same MHA block. Params are the position
               scheme's own (none are learned); FLOPs/token are its own cost: RoPE 3 per rotated
               value of q and k, ALiBi 1 add per score (n_heads x seq_len).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..blocks.alibi import Alibi
from ..blocks.attention import Attention, AttentionContext
from ..blocks.cache import LayerCache
from ..blocks.masks import build_mask
from ..blocks.mla import MultiHeadLatentAttention
from ..blocks.mlp import MLP_KINDS
from ..blocks.norm import NORM_KINDS
from ..blocks.rope import RotaryEmbedding
from .flops import attention_score_flops
from .memory import dtype_bytes


@dataclass(frozen=True)
class BlockSize:
    """The stated size every variant is built at."""

    d_model: int = 4096
    n_heads: int = 32
    n_kv_heads: int | None = None  # for gqa; unset = n_heads // 4 (at least 1)
    head_dim: int | None = None  # unset = d_model // n_heads
    hidden: int | None = None  # plain MLP width; unset = 4 d_model
    iso_params: bool = False
    kv_lora_rank: int | None = None  # mla; unset = 4 head_dim (DeepSeek-V3: 512 for 128)
    q_lora_rank: int | None = None  # mla; unset = 3 kv_lora_rank (DeepSeek-V3: 1536)
    seq_len: int = 32
    batch: int = 1
    dtype: str = "bf16"  # for KV bytes only; blocks run in float32

    @property
    def hd(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def gqa_kv_heads(self) -> int:
        return self.n_kv_heads or max(1, self.n_heads // 4)

    @property
    def plain_hidden(self) -> int:
        return self.hidden or 4 * self.d_model


@dataclass(frozen=True)
class BlockReport:
    """What one variant measured."""

    kind: str
    variant: str
    params: int
    flops_per_token: int
    kv_values_per_token: int | None  # formula, one layer
    kv_values_measured: int | None  # read off the cache the block filled
    kv_bytes_per_token: float | None
    seconds_per_call: float
    output_mean: float
    output_std: float
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Built:
    """A built variant: the module, how to call it, and its formula numbers."""

    module: nn.Module
    call: Callable[[torch.Tensor, LayerCache | None], torch.Tensor]
    flops_per_token: int
    kv_values_per_token: int | None = None
    note: str = ""
    counted: nn.Module | None = None  # whose parameters are reported; unset = module


def _linear_weights(module: nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))


def _attention_call(module: nn.Module, rotary: RotaryEmbedding | None, alibi: Alibi | None = None):
    def call(x: torch.Tensor, cache: LayerCache | None) -> torch.Tensor:
        seq = x.shape[1]
        rotation = rotary(torch.arange(seq)[None], x.dtype) if rotary is not None else None
        bias = alibi.bias(seq, seq, 0).to(x.dtype) if alibi is not None else None
        mask = build_mask(seq, 0, None, bias=bias)
        return module(x, AttentionContext(mask=mask, rotation=rotation, causal=bias is None), cache)

    return call


def _gqa_attention(size: BlockSize, n_kv_heads: int) -> Built:
    module = Attention(size.d_model, size.n_heads, n_kv_heads, size.hd)
    return Built(
        module,
        _attention_call(module, RotaryEmbedding(size.hd)),
        2 * _linear_weights(module) + attention_score_flops(*module.score_widths(), size.seq_len),
        module.kv_values_per_token(),
        f"{size.n_heads} query / {n_kv_heads} kv heads of {size.hd}",
    )


def _mla_attention(size: BlockSize) -> Built:
    hd = size.hd
    rank = size.kv_lora_rank or 4 * hd
    q_rank = 3 * rank if size.q_lora_rank is None else size.q_lora_rank
    rope = hd // 2
    module = MultiHeadLatentAttention(
        size.d_model, size.n_heads, kv_lora_rank=rank, qk_nope_head_dim=hd, qk_rope_head_dim=rope,
        v_head_dim=hd, q_lora_rank=q_rank, mla_mode="absorbed",
    )  # fmt: skip
    return Built(
        module,
        _attention_call(module, RotaryEmbedding(rope, layout="interleaved")),
        2 * _linear_weights(module) + attention_score_flops(*module.score_widths(), size.seq_len),
        module.kv_values_per_token(),
        f"latent {rank} + rope {rope}, q rank {q_rank}, absorbed",
    )


ATTENTION_VARIANTS = {
    "mha": lambda s: _gqa_attention(s, s.n_heads),
    "gqa": lambda s: _gqa_attention(s, s.gqa_kv_heads),
    "mqa": lambda s: _gqa_attention(s, 1),
    "mla": _mla_attention,
}


def _mlp(kind: str, size: BlockSize) -> Built:
    hidden = size.plain_hidden
    gated = kind != "gelu"
    if gated and size.iso_params:
        hidden = round(2 * hidden / 3)
    module = MLP_KINDS[kind](size.d_model, hidden)
    note = f"hidden {hidden}" + (" (2/3 rule)" if gated and size.iso_params else "")
    return Built(module, lambda x, cache: module(x), 2 * _linear_weights(module), None, note)


MLP_VARIANTS = {kind: (lambda s, kind=kind: _mlp(kind, s)) for kind in ("gelu", "swiglu", "geglu")}

NORM_FLOPS_PER_VALUE = {"rmsnorm": 4, "layernorm": 7}


def _norm(kind: str, size: BlockSize) -> Built:
    module = NORM_KINDS[kind](size.d_model)
    return Built(module, lambda x, cache: module(x), NORM_FLOPS_PER_VALUE[kind] * size.d_model)


NORM_VARIANTS = {kind: (lambda s, kind=kind: _norm(kind, s)) for kind in NORM_FLOPS_PER_VALUE}


def _position(kind: str, size: BlockSize) -> Built:
    attention = Attention(size.d_model, size.n_heads, size.n_heads, size.hd)
    rotary = RotaryEmbedding(size.hd) if kind == "rope" else None
    alibi = Alibi(size.n_heads) if kind == "alibi" else None
    position = rotary if rotary is not None else alibi if alibi is not None else nn.Identity()
    holder = nn.ModuleDict({"attention": attention, "position": position})
    own_flops = {"rope": 3 * 2 * size.n_heads * size.hd, "alibi": size.n_heads * size.seq_len, "none": 0}[kind]
    call = _attention_call(attention, rotary, alibi)
    fixed = {"rope": f"{size.hd // 2} fixed frequencies", "alibi": f"{size.n_heads} fixed slopes", "none": "nothing"}
    note = f"{fixed[kind]}; timed inside one MHA block"
    return Built(holder, call, own_flops, None, note, counted=position)


POSITION_VARIANTS = {kind: (lambda s, kind=kind: _position(kind, s)) for kind in ("rope", "alibi", "none")}

BLOCK_KINDS = {
    "attention": ATTENTION_VARIANTS,
    "mlp": MLP_VARIANTS,
    "norm": NORM_VARIANTS,
    "position": POSITION_VARIANTS,
}
"""``--blocks KIND:variant,...`` -> variant name -> builder(BlockSize) -> Built."""


def build_block(kind: str, variant: str, size: BlockSize) -> Built:
    """Build one variant with its constructors' default init, seeded: the same for every caller."""
    if kind not in BLOCK_KINDS:
        raise ValueError(f"--blocks: unknown block kind {kind!r}; choose from {', '.join(BLOCK_KINDS)}")
    variants = BLOCK_KINDS[kind]
    if variant not in variants:
        raise ValueError(f"--blocks: {kind} has no variant {variant!r}; choose from {', '.join(variants)}")
    torch.manual_seed(0)
    return variants[variant](size)


def measure_block(kind: str, variant: str, size: BlockSize, *, repeats: int = 3) -> BlockReport:
    """Build, run once with a KV cache (attention), then time ``repeats`` calls (median)."""
    built = build_block(kind, variant, size)
    module = built.module.eval()
    torch.manual_seed(1)
    x = torch.randn(size.batch, size.seq_len, size.d_model)
    measured = None
    with torch.no_grad():
        if built.kv_values_per_token is not None:
            cache = LayerCache(size.seq_len)
            built.call(x, cache)
            measured = cache.values_per_token()
        out = built.call(x, None)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = built.call(x, None)
            times.append(time.perf_counter() - start)
    kv = built.kv_values_per_token
    counted = built.counted if built.counted is not None else module
    return BlockReport(
        kind=kind,
        variant=variant,
        params=sum(p.numel() for p in counted.parameters()),
        flops_per_token=built.flops_per_token,
        kv_values_per_token=kv,
        kv_values_measured=measured,
        kv_bytes_per_token=None if kv is None else kv * dtype_bytes(size.dtype),
        seconds_per_call=sorted(times)[len(times) // 2],
        output_mean=out.float().mean().item(),
        output_std=out.float().std().item(),
        note=built.note,
    )
