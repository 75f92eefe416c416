"""The one error type for bad configs."""

from __future__ import annotations

from ..errors import ArchzooError


class ConfigError(ArchzooError, ValueError):
    """A config broke a rule. The message names the file, the field and the rule.

    >>> str(ConfigError("configs/llama/x.toml", "attention.n_kv_heads", "must divide n_heads (32)"))
    'configs/llama/x.toml: attention.n_kv_heads: must divide n_heads (32)'
    """

    def __init__(self, source: str, field: str, rule: str):
        self.source = source
        self.field = field
        self.rule = rule
        super().__init__(f"{source}: {field}: {rule}")
