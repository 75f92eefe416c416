"""Fuzzing every shipped config: each mutant either loads, builds on ``meta`` and
gives finite counts and estimates, or raises ``ConfigError`` naming its file and a
field. Nothing else, and nothing slow or big.

Mutations (1 to 3 per example): a deleted key or section, a wrong type (string,
list, bool, table), NaN / inf, zero / negative / huge / past-int64 numbers, unknown
kinds, random head counts (inconsistent heads), random MoE plans. Hypothesis runs
derandomized (a fixed seed from the test's name) with no example database, so CI
sees the same 45 x 6 = 270 examples every run (about 4 s of CPU time; most
mutants are refused by validation in microseconds, the rest cost a meta build).
"""

from __future__ import annotations

import copy
import math
import resource
import time
import tomllib

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import archzoo
from archzoo.config import Config, ConfigError, config_paths
from archzoo.config.sections import SECTIONS, PositionSection, RopeScalingSection

PATHS = config_paths()
EXAMPLES_PER_CONFIG = 6
SECONDS = 5.0  # CPU seconds of this process for one example; inspecting DeepSeek-V3 (61 layers) takes ~0.5 s.
# CPU time, not wall time: other processes on a busy machine slow the clock, not the work.
PROCESS_MB = 64  # growth of the process's peak RSS in one example (tests/test_inspect_bounds.py measures finer)

FIELDS = {
    name: [f for f in cls.__dataclass_fields__ if f != "scaling"] for name, cls in SECTIONS.items()
}
FIELDS["position.scaling"] = list(RopeScalingSection.__dataclass_fields__)
KIND_FIELDS = {
    "norm": ["kind", "placement"],
    "attention": ["kind", "mla_mode"],
    "position": ["kind", "layout"],
    "mlp": ["kind", "gelu_approximate", "gated_half_order"],
    "moe": ["scoring", "group_score"],
    "position.scaling": ["kind"],
}
assert "scaling" in PositionSection.__dataclass_fields__

NUMBERS = st.sampled_from(
    [0, -1, 1, 2, 3, 7, 1000, 2**31, 2**40, 2**62, 2**64 + 1, 0.0, -0.5, 0.5, 1e-12, 1e300,
     float("nan"), float("inf"), float("-inf")]
)
WRONG_TYPES = st.sampled_from(["12", "", [1, 2], [], True, False, {"x": 1}])
KINDS = st.sampled_from(["bogus", "", "RMSNorm", "mqa", "gqa", "linear", "yarn", "rope", "gelu", "sigmoid"])


def _table(data: dict, section: str, create: bool) -> dict | None:
    table = data
    for part in section.split("."):
        if not isinstance(table.get(part), dict):
            if not create:
                return None
            table[part] = {}
        table = table[part]
    return table


@st.composite
def mutation(draw, data: dict) -> str:
    """Mutate ``data`` in place; returns what was done (shown when a test fails)."""
    op = draw(st.sampled_from(["delete", "type", "number", "kind", "heads", "moe", "section"]))
    section = draw(st.sampled_from(sorted(FIELDS)))
    key = draw(st.sampled_from(FIELDS[section]))
    if op == "section":
        name = draw(st.sampled_from([*SECTIONS, "name", "family"]))
        data.pop(name, None)
        return f"delete {name}"
    if op == "heads":
        attention = _table(data, "attention", True)
        attention["n_heads"] = draw(st.integers(1, 200))
        if draw(st.booleans()):
            attention["n_kv_heads"] = draw(st.integers(1, 64))
        if draw(st.booleans()):
            attention["head_dim"] = draw(st.integers(1, 300))
        return f"heads {attention}"
    if op == "moe":
        moe = _table(data, "moe", True)
        for name, high in [("n_experts", 64), ("top_k", 16), ("expert_hidden", 64), ("n_shared_experts", 4),
                           ("n_groups", 8), ("topk_groups", 8), ("first_dense_layers", 130), ("sparse_step", 5)]:
            if draw(st.booleans()) or name in ("n_experts", "top_k", "expert_hidden"):
                moe.setdefault(name, 0)
                moe[name] = draw(st.integers(0, high))
        if draw(st.booleans()):
            moe["dense_layers"] = draw(st.lists(st.integers(-2, 130), max_size=4))
        return f"moe {moe}"
    table = _table(data, section, create=op != "delete")
    if table is None:
        return f"nothing ({op} {section}.{key})"
    if op == "delete":
        table.pop(key, None)
        return f"delete {section}.{key}"
    if op == "kind":
        key = draw(st.sampled_from(KIND_FIELDS.get(section, ["kind"])))
        table[key] = draw(KINDS)
    elif op == "type":
        table[key] = draw(WRONG_TYPES)
    else:
        table[key] = draw(NUMBERS)
    return f"{section}.{key} = {table[key]!r}"


def _finite(*numbers: float) -> bool:
    return all(isinstance(n, int) or math.isfinite(n) for n in numbers)


@pytest.mark.parametrize("name", list(PATHS))
@settings(
    max_examples=EXAMPLES_PER_CONFIG,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure message already says the mutations
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_mutant_loads_and_inspects_or_names_its_file_and_field(name, data):
    path = str(PATHS[name])
    mutant = copy.deepcopy(tomllib.loads(PATHS[name].read_text(encoding="utf-8")))
    done = [data.draw(mutation(mutant)) for _ in range(data.draw(st.integers(1, 3)))]
    note = f"{name}: {'; '.join(done)}"

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.process_time()
    try:
        cfg = Config.from_dict(mutant, source=path)
    except ConfigError as err:
        assert err.source == path and err.field and f"{path}: {err.field}: " in str(err), note
        loaded = False
    else:
        loaded = True
        report = archzoo.count_params(cfg)
        memory = archzoo.estimate_memory(cfg, batch=1, seq_len=min(cfg.model.max_seq_len, 4096), params=report)
        archzoo.build_model(cfg, device="meta")
        assert report.total > 0 and 0 < report.active <= report.total, note
        assert _finite(report.total, memory.inference_bytes, memory.training_bytes, memory.kv_cache_bytes,
                       memory.activation_bytes, memory.flops.forward_per_token), note
    finally:
        seconds = time.process_time() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert seconds < SECONDS, f"{note}: {seconds:.1f} CPU s ({'loaded' if loaded else 'refused'})"
    assert grown < PROCESS_MB, f"{note}: peak RSS grew by {grown:.0f} MB"
