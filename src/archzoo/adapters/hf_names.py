"""Our module paths <-> the Hugging Face checkpoint's, by the family's own weight rules.

An adapter attaches to a linear layer; its PEFT key is the checkpoint name of
that layer's weight with ``.weight`` replaced by ``.lora_A.weight``. The family
table (``models/hf/<family>.py``) already says how every weight is named in the
checkpoint, so the names are translated by running one weight name through the
same rules, never by a second table:

    Rename        layers.0.attn.q_proj  <->  model.layers.0.self_attn.q_proj
    SplitFused    layers.0.attn.q_proj  <->  part 0 of transformer.h.0.self_attention.query_key_value
                  (whose ``split`` / ``fuse`` also split and fuse the adapter's B rows)

A rule that stacks experts or drops tensors has no linear layer to adapt.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config
from ..errors import CheckpointError
from ..models.hf.family import HFFamily, UnsupportedConfig
from ..models.hf.rules import Rename, Rule, SplitFused, match_key


@dataclass(frozen=True)
class HFTarget:
    """Where one of our linear layers lives in the checkpoint.

    module: the checkpoint's module path (weight name without ``.weight``).
    part: for a fused checkpoint tensor, which of ``rule.ours`` this layer is (else None).
    """

    module: str
    part: int | None = None
    rule: SplitFused | None = None
    fields: tuple[tuple[str, str], ...] = ()

    def part_modules(self) -> list[str]:
        """Our module paths of every part of a fused tensor, in the rule's order."""
        fields = dict(self.fields)
        return [pattern.format(**fields).removesuffix(".weight") for pattern in self.rule.ours]


def hf_target(module: str, rules: list[Rule]) -> HFTarget:
    """Our linear layer ``module`` -> its checkpoint module (the first rule that claims its weight)."""
    key = module + ".weight"
    for rule in rules:
        if isinstance(rule, Rename):
            fields = match_key(rule.ours, key)
            if fields is not None:
                return HFTarget(rule.hf.format(**fields).removesuffix(".weight"))
        elif isinstance(rule, SplitFused):
            for part, pattern in enumerate(rule.ours):
                fields = match_key(pattern, key)
                if fields is not None:
                    hf_module = rule.hf.format(**fields).removesuffix(".weight")
                    return HFTarget(hf_module, part, rule, tuple(fields.items()))
    raise UnsupportedConfig(f"{module}: no weight rule of this architecture maps {key}, so its adapter has no checkpoint name")


def our_modules(hf_module: str, rules: list[Rule]) -> tuple[list[str], SplitFused | None]:
    """A checkpoint module -> our module paths (several for a fused tensor, with its rule)."""
    key = hf_module + ".weight"
    for rule in rules:
        if isinstance(rule, Rename):
            fields = match_key(rule.hf, key)
            if fields is not None:
                return [rule.ours.format(**fields).removesuffix(".weight")], None
        elif isinstance(rule, SplitFused):
            fields = match_key(rule.hf, key)
            if fields is not None:
                return [p.format(**fields).removesuffix(".weight") for p in rule.ours], rule
        elif match_key(getattr(rule, "hf", "") or "", key) is not None or any(
            match_key(part, key) is not None for part in getattr(rule, "hf_parts", ())
        ):
            break
    raise CheckpointError(f"{hf_module}: no linear layer of ours corresponds to this checkpoint module (stacked experts and dropped tensors take no adapter)")


def family_of_model(model) -> tuple[HFFamily, Config]:
    """The Hugging Face architecture the model saves as (the one it was loaded from, else the first that fits)."""
    from ..models.hf import _choose_family  # here, not at the top: models.hf imports adapters.lora

    family, _ = _choose_family(model.config, getattr(model, "hf_architecture", None))
    return family, model.config
