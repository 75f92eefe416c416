"""Parameter reports computed on the ``meta`` device: nothing is allocated.

Counted the way ``transformers`` counts them: learnable tensors, tied
weights once. Non-learnable state (buffers) is reported on its own line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .config import Config, load_config


@dataclass(frozen=True)
class ParamReport:
    """total = embedding + non_embedding.

    embedding: the token embedding, plus the output head when it is not tied
    (both are vocab x d_model matrices); tied heads are counted once.
    """

    name: str
    total: int
    embedding: int
    non_embedding: int
    tied_embeddings: bool

    def to_dict(self) -> dict:
        return asdict(self)


def count_params(cfg: Config | str) -> ParamReport:
    """Exact parameter counts of a config, from a model built on ``meta``."""
    from .models.decoder import build_model

    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    model = build_model(cfg, device="meta")
    total = sum(p.numel() for p in model.parameters())
    embedding = model.embed.weight.numel()
    if not cfg.model.tie_embeddings:
        embedding += model.lm_head.weight.numel()
    return ParamReport(
        name=cfg.name,
        total=total,
        embedding=embedding,
        non_embedding=total - embedding,
        tied_embeddings=cfg.model.tie_embeddings,
    )
