"""Model configs: TOML sections as frozen dataclasses, loading and validation (no torch)."""

from .errors import ConfigError
from .load import config_dirs, config_paths, load_config
from .model_config import Config, LayerPlan
from .sections import (
    SECTIONS,
    AttentionSection,
    MLPSection,
    ModelSection,
    MoESection,
    NormSection,
    PositionSection,
    RopeScalingSection,
    TokensSection,
)

__all__ = [
    "SECTIONS",
    "AttentionSection",
    "Config",
    "ConfigError",
    "LayerPlan",
    "MLPSection",
    "MoESection",
    "ModelSection",
    "NormSection",
    "PositionSection",
    "RopeScalingSection",
    "TokensSection",
    "config_dirs",
    "config_paths",
    "load_config",
]
