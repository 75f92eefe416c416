"""The decoder-only language model, assembled from a config's layer plan.

    h_0 = E[x]                      (+ embedding norm: BLOOM)
    h_l = Layer_l(h_{l-1})          l = 1..L, each: attention sublayer, then MLP/MoE sublayer,
                                    wired by ``blocks/residual.py``
    logits = W_head N_final(h_L)    (W_head = E when embeddings are tied; rows normalised
                                     first with ``norm_head``: Baichuan 2, ``blocks/norm_head.py``)
    loss = cross-entropy(logits, targets)   with ``targets=``: the head and the loss as one
                                     block (``blocks/next_token_loss.py``), so that its fast
                                     form can skip the [batch, seq, vocab] logits

One code path for every family: what differs is data in the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..blocks.alibi import Alibi
from ..blocks.attention import AttentionContext
from ..blocks.cache import KVCache, LayerCache
from ..blocks.masks import build_mask
from ..blocks.moe import MoEOutput
from ..blocks.next_token_loss import NextTokenLoss
from ..blocks.norm_head import NormHead
from ..blocks.residual import select_wiring
from ..config import Config, LayerPlan, load_config
from ..fast import check_implementation, use_implementation
from .builders import POSITION_KINDS, build_attention, build_feedforward, build_norm
from .inputs import check_forward_inputs


@dataclass
class CausalLMOutput:
    """What ``model(..., return_dict=True)`` gives: logits plus MoE training signals."""

    logits: torch.Tensor | None  # None when the loss was asked for (``targets=``): it is not formed
    aux_loss: torch.Tensor | None = None  # sum over MoE layers, already weighted by aux_loss_coef
    expert_loads: list[torch.Tensor] = field(default_factory=list)  # per MoE layer, tokens per expert
    loss: torch.Tensor | None = None  # with ``targets=``: mean next-token cross-entropy (float32), aux_loss apart


class MoECollector:
    """Where one forward's MoE layers leave their ``MoEOutput`` (``.outputs``, in layer order).

    Deliberately not a list: FSDP2's forward hooks rebuild list and tuple arguments when they
    cast or move inputs, so what a layer appended to a list would land in a copy."""

    def __init__(self):
        self.outputs: list[MoEOutput] = []


class DecoderLayer(nn.Module):
    """Attention sublayer then feed-forward sublayer, each wrapped by the config's residual wiring."""

    def __init__(self, cfg: Config, plan: LayerPlan):
        super().__init__()
        self.plan = plan
        self.attn_norm = build_norm(cfg)
        self.attn = build_attention(cfg, plan)
        self.mlp_norm = build_norm(cfg)
        self.mlp = build_feedforward(cfg, plan)
        sandwich = cfg.norm.placement == "sandwich"
        self.attn_post_norm = build_norm(cfg) if sandwich else None
        self.mlp_post_norm = build_norm(cfg) if sandwich else None
        self.wiring = select_wiring(cfg.norm.placement, cfg.norm.residual_from_normed)
        self.alpha = cfg.deepnorm_alpha

    def forward(
        self,
        x: torch.Tensor,
        ctx: AttentionContext,
        cache: LayerCache | None = None,
        moe_outputs: MoECollector | None = None,
    ) -> torch.Tensor:
        """The layer's output; a MoE layer appends this call's ``MoEOutput`` to ``moe_outputs.outputs``."""
        x = self.wiring(x, lambda h: self.attn(h, ctx, cache), self.attn_norm, self.attn_post_norm, self.alpha)
        return self.wiring(x, lambda h: self.feedforward(h, moe_outputs), self.mlp_norm, self.mlp_post_norm, self.alpha)

    def feedforward(self, h: torch.Tensor, moe_outputs: MoECollector | None) -> torch.Tensor:
        if self.plan.mlp == "dense":
            return self.mlp(h)
        out = self.mlp(h)
        if moe_outputs is not None:
            moe_outputs.outputs.append(out)
        return out.hidden


class CausalLM(nn.Module):
    """Embedding, decoder layers, final norm and output head, as the config says.

    Constructed directly it is ready to use: weights initialised by ``init_weights``
    (normal(0, init_std), DeepNorm's beta), except on the ``meta`` device, where
    there is nothing to initialise. ``build_model`` adds the device and dtype.
    """

    def __init__(self, cfg: Config):
        super().__init__()
        self.config = cfg
        d_model, vocab = cfg.model.d_model, cfg.model.vocab_size
        # an explicit weight skips nn.Embedding's own normal_ init: init_weights below does it,
        # and normal_ on the meta device costs a one-off ~5 s import of torch._dynamo
        self.embed = nn.Embedding(vocab, d_model, _weight=torch.empty(vocab, d_model))
        self.embed_norm = build_norm(cfg) if cfg.model.embedding_norm else None
        self.positions = POSITION_KINDS[cfg.position.kind](cfg)
        self.layers = nn.ModuleList(DecoderLayer(cfg, plan) for plan in cfg.layer_plan)
        self.final_norm = build_norm(cfg) if cfg.has_final_norm else None
        self.lm_head = (NormHead if cfg.model.norm_head else nn.Linear)(d_model, vocab, bias=False)
        if cfg.model.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.next_token_loss = NextTokenLoss()  # no parameters: it applies lm_head
        self.activation_checkpointing = False  # recompute each layer in backward (train/recompute.py)
        self.prefix = None  # P-tuning v2 keys/values ahead of every layer's (blocks/prefix.py, add_prefix)
        if not self.embed.weight.is_meta:
            with torch.no_grad():
                init_weights(self)

    def new_cache(self, max_len: int) -> KVCache:
        """An empty KV cache for up to ``max_len`` slots (prompt + generated; a prefix's slots come on top)."""
        return KVCache(len(self.layers), max_len + (self.prefix.length if self.prefix is not None else 0))

    def attention_context(
        self,
        seq: int,
        past: int,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> AttentionContext:
        """Mask, rotation tables and ALiBi bias: computed once, shared by all layers."""
        bias = rotation = None
        if isinstance(self.positions, Alibi):
            bias = self.positions.bias(seq, past + seq, past, device).to(dtype)
        elif self.positions is not None:
            if position_ids is None:
                rotation = self.positions.range_rotation(past, seq, dtype, device)
            else:
                rotation = self.positions(position_ids, dtype)
        mask = build_mask(seq, past, attention_mask, bias=bias, device=device)
        causal = attention_mask is None and bias is None  # build_mask made causal_mask(seq, past + seq, past)
        return AttentionContext(mask=mask, rotation=rotation, past=past, causal=causal)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: KVCache | None = None,
        *,
        logits_to_keep: int = 0,
        return_dict: bool = False,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor | CausalLMOutput:
        """Logits ``[batch, seq, vocab]`` (only the last ``logits_to_keep`` positions if > 0).

        With ``targets`` (``[batch, seq]`` token ids, -100 = no loss at that position; for
        next-token training, the inputs shifted by one), the mean cross-entropy of the
        logits against them instead, in float32: a 0-dim tensor, or with ``return_dict`` the
        output's ``loss`` (its ``logits`` are then None: they are never formed whole).

        attention_mask: ``[batch, past + seq]`` padding (1 = keep) or a boolean
            ``[batch, seq, past + seq]`` matrix (True = may attend).
        position_ids: ``[batch, seq]``, or ``[batch, 2, seq]`` for GLM 2D positions;
            default past, past + 1, ...
        cache: a ``KVCache`` from ``new_cache``; it is appended to in place.
        Bad arguments raise ``InputError`` (rules and costs: ``models/inputs.py``).
        """
        past = cache.length if cache is not None else 0
        check_forward_inputs(self.config, input_ids, attention_mask, position_ids, cache, logits_to_keep, past, targets)
        batch, seq = input_ids.shape
        layer_caches = cache.layers if cache is not None else [None] * len(self.layers)
        if self.prefix is not None:  # the prefix is every layer's past; the mask gains its slots
            layer_caches, attention_mask, past = self.prefix.as_past(cache, batch, attention_mask)
        hidden = self.embed(input_ids)
        scale = self.config.model.embedding_grad_scale
        if scale != 1.0 and torch.is_grad_enabled():
            # GLM-130B embedding gradient shrink: same value, gradient scaled by `scale`.
            # GLM writes h*s + h.detach()*(1-s), which moves the value by an ulp; here
            # (h - h.detach()) is exactly 0, so the forward value is h bit for bit.
            hidden = hidden.detach() + (hidden - hidden.detach()) * scale
        if self.embed_norm is not None:
            hidden = self.embed_norm(hidden)
        ctx = self.attention_context(seq, past, attention_mask, position_ids, hidden.dtype, hidden.device)
        moe_outputs = MoECollector()  # this call's routing signals, one per MoE layer
        for layer, layer_cache in zip(self.layers, layer_caches):
            if self.activation_checkpointing and torch.is_grad_enabled():
                # the backward's recomputation appends again; this call's output is read before that
                hidden = checkpoint(layer, hidden, ctx, layer_cache, moe_outputs, use_reentrant=False)
            else:
                hidden = layer(hidden, ctx, layer_cache, moe_outputs)
        if cache is not None:
            cache.advance(seq)
        if self.final_norm is not None:
            hidden = self.final_norm(hidden)
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        loss = logits = None
        if targets is not None:
            loss = self.next_token_loss(hidden, self.lm_head, targets.long())  # cross_entropy takes int64
        else:
            logits = self.lm_head(hidden)
        if not return_dict:
            return logits if targets is None else loss
        aux = [out.aux_loss for out in moe_outputs.outputs if out.aux_loss is not None]
        return CausalLMOutput(
            logits=logits,
            aux_loss=torch.stack(aux).sum() if aux else None,
            expert_loads=[out.expert_load for out in moe_outputs.outputs],
            loss=loss,
        )


def init_weights(model: CausalLM) -> None:
    """Normal(0, init_std) weights, zero biases, unit norm gains.

    DeepNorm (Wang et al. 2022) scales the value, output and MLP weights by beta.
    Modules with their own ``init_weights(std)`` (stacked MoE experts) do it themselves.
    """
    cfg = model.config
    std = cfg.model.init_std
    for module in model.modules():
        if hasattr(module, "init_weights") and module is not model:
            module.init_weights(std)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    if cfg.norm.placement == "deepnorm":
        beta = cfg.deepnorm_beta
        with torch.no_grad():
            for name, param in model.named_parameters():
                if any(part in name for part in ("v_proj.weight", "o_proj.weight", "mlp.")) and param.dim() >= 2:
                    param.mul_(beta)


def build_model(
    cfg: Config | str,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    *,
    implementation: str = "fast",
) -> CausalLM:
    """Assemble the model a config describes. ``device="meta"`` allocates nothing.

    implementation: ``"fast"`` (default) uses the speed forms of ``archzoo/fast/``
    where a block has one, ``"reference"`` only the blocks of ``archzoo/blocks/``;
    both compute the same numbers up to float rounding, with the same weights.
    """
    check_implementation(implementation)
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    device = torch.device(device) if device is not None else torch.device("cpu")
    with device:
        model = CausalLM(cfg)  # initialised, unless on meta
    if dtype is not None:
        model.to(dtype)
    return use_implementation(model, implementation)
