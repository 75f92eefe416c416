"""The range of every number in a config, checked at load (no torch).

Every float must be finite (NaN and inf are refused everywhere: with
``theta = nan`` every attention sublayer outputs zeros and generation still
"works"). Every size has a sane upper bound, far above any released model
(the largest shipped figures are in brackets), so that a typo such as
``head_dim = 1099511627776`` fails here with the file and the field instead
of exhausting memory inside ``count_params``; the bounds also keep every
tensor size inside int64 and every ``build_model(device="meta")`` within a
few seconds (1024 layers of DeepSeek-V3 build on meta in about 4 s on a busy
2-core CPU).

``Range(low, high)`` is inclusive on both ends unless ``low_open`` /
``high_open``; ``None`` is no bound. A field that is ``None`` (unset) is not
checked here.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Range:
    low: float | None
    high: float | None
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.high_open else value > self.high))

    def complaint(self, value: float) -> str:
        """The rule ``value`` breaks, in words: 'must be > 0, got -1', 'must be in [1, 1,024] (...), got 4,096'."""
        got = repr(value) if isinstance(value, float) else f"{value:,}"
        below = self.low is not None and not (value > self.low if self.low_open else value >= self.low)
        fraction = self.low == 0 and self.high == 1 and not self.high_open  # (0, 1]: say the whole interval
        if below and not fraction and (self.low == 0 and self.low_open or self.low == 1 and isinstance(value, int)):
            return f"must be > 0, got {got}"  # positivity, in the usual words
        if below and self.low == 0 and not fraction:
            return f"must be >= 0, got {got}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        low = "-inf" if self.low is None else _number(self.low)
        high = "inf" if self.high is None else _number(self.high)
        return f"must be in {left}{low}, {high}{right}" + (f" ({self.why})" if self.why else "") + f", got {got}"


def _number(v: float) -> str:
    return f"{v:,}" if isinstance(v, int) else f"{v:g}"


def positive(high: float, why: str = "") -> Range:
    """(0, high]: widths, scales, rates."""
    return Range(0, high, low_open=True, why=why)


def count(low: int, high: int, why: str = "") -> Range:
    """[low, high]: integer counts and sizes."""
    return Range(low, high, why=why)


LIMITS: dict[str, Range] = {
    # [model]
    "model.vocab_size": count(1, 2**24, "a sane bound; largest shipped 250,880"),
    "model.d_model": count(1, 2**17, "a sane bound; largest shipped 16,384"),
    "model.n_layers": count(1, 1024, "a sane bound; largest shipped 126; DeepNet's 1,000 fits"),
    "model.max_seq_len": count(1, 2**27, "a sane bound; largest shipped 163,840"),
    "model.mtp_layers": count(0, 16),
    "model.init_std": positive(1.0),
    "model.embedding_grad_scale": positive(1.0, "1 = off"),
    # [norm]
    "norm.eps": Range(0, 1, low_open=True, high_open=True, why="a small positive number such as 1e-5"),
    "norm.deepnorm_alpha": positive(1e4),
    "norm.deepnorm_beta": positive(1e4),
    # [attention]
    "attention.n_heads": count(1, 2**12),
    "attention.n_kv_heads": count(1, 2**12),
    "attention.head_dim": count(1, 2**14),
    "attention.softmax_scale": positive(1e4),
    "attention.q_lora_rank": count(0, 2**17, "0 = no query compression"),
    "attention.kv_lora_rank": count(0, 2**17),
    "attention.qk_nope_head_dim": count(0, 2**14),
    "attention.qk_rope_head_dim": count(0, 2**14),
    "attention.v_head_dim": count(0, 2**14),
    # [position]
    "position.theta": Range(1, 1e9, low_open=True, why="the RoPE base: frequencies theta^(-2i/r) must fall; largest shipped 5e6"),
    "position.rotary_fraction": positive(1.0),
    # [position.scaling]
    "position.scaling.factor": Range(1, 1e4, why="a context extension factor"),
    "position.scaling.original_max_seq_len": count(1, 2**27),
    "position.scaling.low_freq_factor": positive(1e4),
    "position.scaling.high_freq_factor": positive(1e4),
    "position.scaling.beta_fast": positive(1e4),
    "position.scaling.beta_slow": positive(1e4),
    "position.scaling.mscale": Range(0, 1e3),
    "position.scaling.mscale_all_dim": Range(0, 1e3),
    # [mlp]
    "mlp.hidden": count(1, 2**20),
    "mlp.multiple_of": count(1, 2**20),
    "mlp.ffn_dim_multiplier": positive(100.0),
    # [moe]
    "moe.n_experts": count(1, 2**14),
    "moe.top_k": count(1, 2**14),
    "moe.expert_hidden": count(1, 2**20),
    "moe.n_shared_experts": count(0, 2**10),
    "moe.shared_hidden": count(1, 2**20),
    "moe.n_groups": count(1, 2**14),
    "moe.topk_groups": count(1, 2**14),
    "moe.routed_scaling_factor": positive(1e3),
    "moe.first_dense_layers": count(0, 1024),
    "moe.sparse_step": count(1, 1024),
    "moe.aux_loss_coef": Range(0, 1e3),
    "moe.bias_update_rate": Range(0, 1.0),
}
"""``section.field`` -> its range. Fields not listed (token ids) have rules in ``validate.py``."""


def check_numbers(config, fail) -> None:
    """Every float finite, every int within int64, every listed field within its range."""
    for name in ("model", "norm", "attention", "position", "mlp", "moe", "tokens"):
        section = getattr(config, name)
        if section is not None:
            _check_section(name, section, fail)


def _check_section(prefix: str, section, fail) -> None:
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        where = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            _check_section(where, value, fail)
            continue
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and not math.isfinite(v):
                fail(where, f"must be a finite number, got {v}")
            if isinstance(v, int) and abs(v) > INT64_MAX:
                fail(where, f"must fit in 64 bits, got {v}")
            limit = LIMITS.get(where)
            if limit is not None and not limit.contains(v):
                fail(where, limit.complaint(v))
