"""Parameter reports computed on the ``meta`` device: nothing is allocated.

Counted the way ``transformers`` counts them: learnable tensors, tied
weights once. Non-learnable state that a checkpoint stores (DeepSeek-V3's
router correction bias) is a *buffer* and is reported on its own line, never
in the total. Buffers rebuilt from the config (RoPE frequencies, ALiBi
slopes) are not stored and not reported.

Every parameter lands in exactly one component, by the module that owns it:

    embeddings      the token embedding table ``embed``
    lm_head         the output head, 0 when it is tied to the embedding
    norms           every RMSNorm / LayerNorm (layer norms, final norm, qk-norm, MLA latent norms)
    attention       the rest of ``layers.*.attn``
    mlp             dense feed-forward layers ``layers.*.mlp``
    routed_experts  MoE experts a router chooses from (stacked ``[n_experts, ...]``)
    router          the router's scoring weights (``[n_experts, d_model]``)
    shared_experts  the rest of a MoE layer: always-on experts and their gate

so the rows sum to the total. DeepSeek-V3's multi-token-prediction (MTP)
module is not part of the main model (it is dropped at inference) and is
counted apart, as ``mtp``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache

import torch
from torch import nn

from ..blocks.norm import NORM_KINDS
from ..config import Config, LayerPlan, load_config
from ..models.builders import build_norm
from ..models.decoder import DecoderLayer, build_model

COMPONENTS = (
    "embeddings",
    "attention",
    "mlp",
    "routed_experts",
    "shared_experts",
    "router",
    "norms",
    "lm_head",
)
"""Report rows, in print order; they sum to ``total``."""


@dataclass(frozen=True)
class ParamReport:
    """Exact parameter counts of one config.

    total = embedding + non_embedding = sum(components.values()).

    embedding: the token embedding, plus the output head when it is not tied
        (both are vocab x d_model matrices); a tied head is counted once.
    components: parameters per component (see the module docstring).
    active: parameters one token passes through. For a MoE model that is the
        total minus the routed experts the token does not use:
        active = total - sum over MoE layers of (n_experts - top_k) x (one expert's parameters).
        Equal to total for a dense model.
    active_components: ``components`` as one token sees them (routed experts: top_k of n_experts).
    buffers: stored, non-learned tensors (name pattern -> values), not in total.
    mtp: parameters of the multi-token-prediction modules (DeepSeek-V3), not in
        total; without the embedding and output head they share with the main model.
    """

    name: str
    total: int
    embedding: int
    non_embedding: int
    tied_embeddings: bool
    components: dict[str, int] = field(default_factory=dict)
    active: int = 0
    active_components: dict[str, int] = field(default_factory=dict)
    buffers: dict[str, int] = field(default_factory=dict)
    mtp: int = 0

    @property
    def is_moe(self) -> bool:
        return self.components.get("routed_experts", 0) > 0

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(cfg: Config | str) -> ParamReport:
    """Exact parameter counts of a config, from a model built on ``meta``."""
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    report = _count(cfg)
    # the report's dicts are the caller's own: changing one must not change the next call's answer
    return replace(report, components=dict(report.components), active_components=dict(report.active_components),
                   buffers=dict(report.buffers))  # fmt: skip


@lru_cache(maxsize=256)
def _count(cfg: Config) -> ParamReport:
    """The counts are a function of the (frozen, hashable) config alone, and building a 61-layer meta model
    costs ~0.1 s: ``archzoo list``, ``compare`` and ``estimate_memory`` ask again for configs already counted."""
    model = build_model(cfg, device="meta")
    components = dict.fromkeys(COMPONENTS, 0)
    for name, param in model.named_parameters():  # tied tensors are yielded once
        part = component_of(model, name, param, cfg)
        components[part] = components.get(part, 0) + param.numel()
    active_components = dict(components)
    if cfg.moe is not None:
        routed, moe = components["routed_experts"], cfg.moe
        if routed % moe.n_experts:
            raise AssertionError(f"{cfg.name}: routed expert parameters ({routed}) are not n_experts equal shares")
        active_components["routed_experts"] = routed // moe.n_experts * moe.top_k
    total = sum(components.values())
    embedding = components["embeddings"] + components["lm_head"]
    return ParamReport(
        name=cfg.name,
        total=total,
        embedding=embedding,
        non_embedding=total - embedding,
        tied_embeddings=cfg.model.tie_embeddings,
        components=components,
        active=sum(active_components.values()),
        active_components=active_components,
        buffers=stored_buffers(model),
        mtp=mtp_params(cfg),
    )


def _norm_types() -> tuple[type, ...]:
    return (nn.LayerNorm, *NORM_KINDS.values())


_LAYER = re.compile(r"^layers\.(\d+)\.(attn|mlp)\.")


def component_of(model: nn.Module, name: str, param: nn.Parameter, cfg: Config) -> str:
    """Which report row parameter ``name`` of ``model`` belongs to."""
    owner = model.get_submodule(name.rpartition(".")[0])
    if isinstance(owner, _norm_types()):
        return "norms"
    if name.startswith("embed."):
        return "embeddings"
    if name.startswith("lm_head."):
        return "lm_head"
    match = _LAYER.match(name)
    if match is None:
        return "other"
    index, sublayer = int(match.group(1)), match.group(2)
    if sublayer == "attn":
        return "attention"
    if cfg.layer_plan[index].mlp == "dense":
        return "mlp"
    return moe_part(model, name, param, cfg.moe.n_experts)


def moe_part(model: nn.Module, name: str, param: nn.Parameter, n_experts: int) -> str:
    """routed_experts / router / shared_experts inside one MoE layer, by shape and container.

    Routed experts are stacked ``[n_experts, ...]`` (3-D) or live in a
    ModuleList of n_experts modules; the router scores every expert from the
    hidden state (``[n_experts, d_model]`` weight, optional ``[n_experts]`` bias).
    """
    parts = name.split(".")
    for depth in range(3, len(parts)):
        container = model.get_submodule(".".join(parts[:depth]))
        if isinstance(container, nn.ModuleList) and len(container) == n_experts:
            return "routed_experts"
    if param.dim() >= 3 and param.shape[0] == n_experts:
        return "routed_experts"
    if param.shape[0] == n_experts:
        return "router"
    return "shared_experts"


def stored_buffers(model: nn.Module) -> dict[str, int]:
    """Persistent buffers (saved in checkpoints), layer indices folded: ``layers.*.mlp.x`` -> values."""
    found: dict[str, int] = {}
    for module_name, module in model.named_modules():
        for buffer_name, buffer in module._buffers.items():
            if buffer is None or buffer_name in module._non_persistent_buffers_set:
                continue
            key = re.sub(r"\.\d+\.", ".*.", f"{module_name}.{buffer_name}")
            found[key] = found.get(key, 0) + buffer.numel()
    return found


def mtp_params(cfg: Config) -> int:
    """Parameters of cfg.model.mtp_layers multi-token-prediction modules (DeepSeek-V3, Sec. 2.2).

    One module: norms on the previous hidden state and on the next token's
    embedding, a projection W [d, 2d] of their concatenation, one decoder
    layer like the last main one, and the final norm before the shared head.
    The embedding and output head are shared with the main model and not
    counted here (the released checkpoint stores copies of both).
    """
    if cfg.model.mtp_layers == 0:
        return 0
    last = cfg.layer_plan[-1]
    plan = LayerPlan(cfg.model.n_layers, last.attention, last.mlp)
    d = cfg.model.d_model
    with torch.device("meta"):
        module = nn.ModuleList([DecoderLayer(cfg, plan), build_norm(cfg), build_norm(cfg), build_norm(cfg)])
    one = sum(p.numel() for p in module.parameters()) + 2 * d * d
    return cfg.model.mtp_layers * one
