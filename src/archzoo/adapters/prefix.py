"""``add_prefix``: P-tuning v2 on a model (``blocks/prefix.py``), everything else frozen."""

from __future__ import annotations

from torch import nn

from ..blocks.mla import MultiHeadLatentAttention
from ..blocks.prefix import PrefixEncoder
from ..errors import InputError
from ..models.hf.family import UnsupportedConfig
from .lora import freeze_all_but_adapters


def add_prefix(model: nn.Module, length: int = 16, projection: bool | int = False) -> nn.Module:
    """Give every layer ``length`` trainable key/value vectors per kv head, ahead of the sequence.

    projection: False trains the table of keys and values directly; True (or a width)
    produces it from a ``length x (kv heads x head_dim)`` embedding through
    Linear -> tanh -> Linear of that hidden width (True: d_model), as P-tuning v2's
    ``prefix_projection``. Returns ``model``; only the prefix trains.
    """
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise InputError(f"length: must be a positive integer, got {length!r}")
    if not (isinstance(projection, bool) or (isinstance(projection, int) and projection >= 1)):
        raise InputError(f"projection: must be True, False or a positive hidden width, got {projection!r}")
    if getattr(model, "prefix", None) is not None:
        raise InputError("model: already has a prefix")
    if any(isinstance(m, MultiHeadLatentAttention) for m in model.modules()):
        raise UnsupportedConfig(
            f"add_prefix: {model.config.name} uses multi-head latent attention; P-tuning v2 prefixes are per-head "
            "keys and values, but absorbed MLA attends over cached latents (blocks/mla.py), so a prefix would need "
            "a latent form that neither P-tuning v2 nor PEFT defines"
        )
    cfg = model.config
    hidden = cfg.model.d_model if projection is True else (projection or None)
    weight = model.embed.weight
    prefix = PrefixEncoder(cfg.model.n_layers, cfg.n_kv_heads, cfg.head_dim, length, projection_hidden=hidden)
    model.prefix = prefix.to(device=weight.device, dtype=weight.dtype)
    freeze_all_but_adapters(model)
    return model
