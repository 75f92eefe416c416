"""What one Hugging Face architecture needs: a config map in both directions and weight rules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...config import Config
from ...errors import ArchzooError
from .rules import Rule


class UnsupportedConfig(ArchzooError, ValueError):
    """An archzoo config uses a feature this Hugging Face architecture cannot express."""


@dataclass(frozen=True)
class QuantizedLayout:
    """A released checkpoint format whose linear weights are integers (ChatGLM-6B's INT8 / INT4).

    recipe(hf_config) -> ``archzoo.quantize``'s arguments (mode, group_size, symmetric, skip,
    embeddings) that give the same layout, or None for a float checkpoint of the family.
    integer_key(key) -> whether checkpoint tensor ``key`` may hold integer codes.
    to_archzoo(state, recipe, folder) -> the state with the codes and scales as the block's
    ``qweight`` / ``scales``, still under the checkpoint's names (the family's rules rename them)."""

    recipe: Callable[[dict], dict | None]
    integer_key: Callable[[str], bool]
    to_archzoo: Callable[[dict, dict, Path], dict]


@dataclass(frozen=True)
class HFFamily:
    """architecture: the ``architectures[0]`` name in config.json.
    config_from_hf(hf_config, name) -> archzoo TOML-shaped dict.
    config_to_hf(cfg) -> config.json dict; raises UnsupportedConfig if it can't express cfg.
    rules(cfg) -> the weight rules for this config.
    quantized: the family's released integer-weight format, if it has one."""

    architecture: str
    config_from_hf: Callable[[dict, str], dict]
    config_to_hf: Callable[[Config], dict]
    rules: Callable[[Config], Sequence[Rule]]
    quantized: QuantizedLayout | None = None


def require(condition: bool, architecture: str, what: str) -> None:
    """Raise UnsupportedConfig unless ``condition``."""
    if not condition:
        raise UnsupportedConfig(f"{architecture} cannot express {what}")


def no_sliding_window(hf: dict, architecture: str) -> None:
    """Refuse a Qwen config.json that turns sliding-window attention on (archzoo has none)."""
    if hf.get("use_sliding_window"):
        raise UnsupportedConfig(f"{architecture}: sliding-window attention (use_sliding_window) is not implemented")


# ---- RoPE parameters: transformers 5 `rope_parameters`, older `rope_theta` + `rope_scaling` ----


def rope_from_hf(hf: dict, layout: str = "half") -> dict:
    """The archzoo ``[position]`` table of a RoPE model's config.json."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = hf.get("rope_scaling") or {}
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    source = params if params.get("rope_type") not in (None, "default") else scaling
    position = {"kind": "rope", "theta": float(theta), "layout": layout}
    fraction = params.get("partial_rotary_factor", hf.get("partial_rotary_factor"))
    if fraction is not None and fraction != 1.0:
        position["rotary_fraction"] = float(fraction)
    if kind != "default":
        position["scaling"] = _scaling_from_hf(kind, source, hf)
    return position


def _scaling_from_hf(kind: str, s: dict, hf: dict) -> dict:
    if kind not in ("linear", "llama3", "yarn"):
        raise UnsupportedConfig(f"rope scaling {kind!r} is not implemented (linear, llama3, yarn are)")
    out = {"kind": kind, "factor": float(s["factor"])}
    original = s.get("original_max_position_embeddings")
    if original is not None:
        out["original_max_seq_len"] = int(original)
    for hf_key, key in (
        ("low_freq_factor", "low_freq_factor"),
        ("high_freq_factor", "high_freq_factor"),
        ("beta_fast", "beta_fast"),
        ("beta_slow", "beta_slow"),
        ("mscale", "mscale"),
        ("mscale_all_dim", "mscale_all_dim"),
    ):
        if s.get(hf_key) is not None:
            out[key] = float(s[hf_key])
    return out


def rope_to_hf(cfg: Config) -> dict:
    """transformers 5 ``rope_parameters`` for a config's ``[position]``."""
    p = cfg.position
    params: dict = {"rope_type": "default", "rope_theta": p.theta}
    if p.rotary_fraction != 1.0:
        params["partial_rotary_factor"] = p.rotary_fraction
    s = p.scaling
    if s is not None:
        params.update(rope_type=s.kind, factor=s.factor)
        if s.original_max_seq_len is not None:
            params["original_max_position_embeddings"] = s.original_max_seq_len
        if s.kind == "llama3":
            params.update(low_freq_factor=s.low_freq_factor, high_freq_factor=s.high_freq_factor)
        if s.kind == "yarn":
            params.update(beta_fast=s.beta_fast, beta_slow=s.beta_slow, mscale=s.mscale, mscale_all_dim=s.mscale_all_dim)
    return params


GATED_ACTIVATIONS = {"silu": ("swiglu", "none"), "gelu": ("geglu", "none"), "gelu_pytorch_tanh": ("geglu", "tanh")}
"""HF ``hidden_act`` of a gated MLP -> (mlp kind, gelu_approximate)."""


def gated_mlp_from_hf(hf: dict, architecture: str) -> dict:
    act = hf.get("hidden_act", "silu")
    if act not in GATED_ACTIVATIONS:
        raise UnsupportedConfig(f"{architecture}: hidden_act {act!r} (supported: {', '.join(GATED_ACTIVATIONS)})")
    kind, approximate = GATED_ACTIVATIONS[act]
    mlp = {"kind": kind, "hidden": hf["intermediate_size"]}
    if approximate != "none":
        mlp["gelu_approximate"] = approximate
    if hf.get("mlp_bias"):
        mlp["bias"] = True
    return mlp


def gated_mlp_to_hf(cfg: Config, architecture: str) -> str:
    """The ``hidden_act`` of a gated MLP config."""
    for act, (kind, approximate) in GATED_ACTIVATIONS.items():
        if cfg.mlp.kind == kind and cfg.mlp.gelu_approximate == approximate:
            return act
    raise UnsupportedConfig(f"{architecture} cannot express mlp kind {cfg.mlp.kind!r}")


def tokens_from_hf(hf: dict) -> dict:
    """bos / eos / pad ids, when config.json has single integers for them."""
    out = {}
    for hf_key, key in (("bos_token_id", "bos_id"), ("eos_token_id", "eos_id"), ("pad_token_id", "pad_id")):
        value = hf.get(hf_key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, int) and 0 <= value < hf["vocab_size"]:
            out[key] = value
    return out


def tokens_to_hf(cfg: Config) -> dict:
    t = cfg.tokens
    return {"bos_token_id": t.bos_id, "eos_token_id": t.eos_id, "pad_token_id": t.pad_id}
