"""Inspection allocates next to nothing, whatever sizes a config names: every size at
its upper bound (config/limits.py) is counted, estimated and built on ``meta`` with a
few MB at most. Before the bounds, ``head_dim = 2**40`` ran out of memory inside
``count_params`` (RoPE frequencies are made on the CPU) and ``n_layers = 10**6`` hung."""

from __future__ import annotations

import resource
import tracemalloc

import pytest

import archzoo
from archzoo.config import Config, ConfigError
from archzoo.config.limits import LIMITS

HIGH = {key: int(r.high) for key, r in LIMITS.items()}

EXTREMES = {
    # widest heads: RoPE frequencies for head_dim / 2 pairs (8,192 floats) are the only real tensor
    "heads": {"model": {"vocab_size": 64, "d_model": 64, "n_layers": 2}, "attention": {"n_heads": 2, "head_dim": HIGH["attention.head_dim"]}, "mlp": {"hidden": 64}},
    # the largest embedding: 2^24 x 2^17 = 2^41 values, on meta
    "embedding": {"model": {"vocab_size": HIGH["model.vocab_size"], "d_model": HIGH["model.d_model"], "n_layers": 1, "max_seq_len": HIGH["model.max_seq_len"]}, "attention": {"n_heads": 1024}, "mlp": {"hidden": HIGH["mlp.hidden"]}},
    # the most experts, each as wide as allowed: [2^14, 2^20, 64] stacked
    "experts": {"model": {"vocab_size": 64, "d_model": 64, "n_layers": 1}, "attention": {"n_heads": 4}, "mlp": {"hidden": 64}, "moe": {"n_experts": HIGH["moe.n_experts"], "top_k": 8, "expert_hidden": HIGH["moe.expert_hidden"]}},
    # many heads with ALiBi: 4,096 slopes
    "alibi": {"model": {"vocab_size": 64, "d_model": 4096, "n_layers": 1}, "attention": {"n_heads": HIGH["attention.n_heads"]}, "position": {"kind": "alibi"}, "mlp": {"hidden": 64}},
}


@pytest.mark.parametrize("name", list(EXTREMES))
def test_inspection_at_the_size_bounds_allocates_a_few_mb(name):
    cfg = Config.from_dict({"name": name, "family": "probe", **EXTREMES[name]}, source=f"<{name}>")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    tracemalloc.start()
    report = archzoo.count_params(cfg)
    memory = archzoo.estimate_memory(cfg, batch=1, seq_len=cfg.model.max_seq_len, params=report)
    archzoo.build_model(cfg, device="meta")
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    assert report.total > 2**20 and memory.inference_bytes > 0
    # Python objects of a one- or two-layer model are ~100 KB; torch's CPU tensors (RoPE
    # frequencies, ALiBi slopes) are < 40 KB here. 8 MB leaves room for allocator noise.
    assert python_peak < 8 * 2**20, f"{python_peak / 2**20:.1f} MB of Python objects"
    assert rss_grown < 8 * 2**20, f"peak RSS grew by {rss_grown / 2**20:.1f} MB"


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [("attention", "head_dim", 2**40), ("model", "n_layers", 10**6)],
)
def test_the_sizes_that_used_to_exhaust_memory_or_hang_are_refused_at_load(section, field, value):
    data = {"name": "probe", "family": "probe", **EXTREMES["heads"]}
    data = {**data, section: {**data[section], field: value}}
    with pytest.raises(ConfigError, match=f"{section}.{field}: must be in"):
        Config.from_dict(data, source="probe.toml")
