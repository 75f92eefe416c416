"""``estimate_memory(..., world_size=N)``: its arguments and the arithmetic it promises (no processes started).

The measured side (within 15% of live tensor bytes on 2 processes) is in ``test_fsdp.py``;
``benchmarks/bench_fsdp_memory.py`` measures 1, 2 and 4.
"""

from __future__ import annotations

import pytest

from archzoo import load_config
from archzoo.inspect import estimate_memory


def test_one_process_is_the_unsharded_step():
    cfg = load_config("llama-tiny")
    assert estimate_memory(cfg, batch=8, seq_len=64, world_size=1) == estimate_memory(cfg, batch=8, seq_len=64)


@pytest.mark.parametrize("name", ["llama-tiny", "qwen2-moe-tiny", "deepseek-v2-tiny"])
def test_shards_divide_the_state_by_n(name):
    cfg = load_config(name)
    one = estimate_memory(cfg, batch=8, seq_len=64).training_step
    for n in (2, 4, 8):
        step = estimate_memory(cfg, batch=8, seq_len=64, world_size=n).training_step
        assert step.world_size == n
        assert step.weights == one.weights / n and step.optimizer_state == one.optimizer_state / n
        assert step.gradients == one.gradients / n
        assert step.gathered > 0 and step.peak < one.peak


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(batch=6, world_size=4), "batch: 6 does not split over world_size 4"),
        (dict(batch=4, world_size=0), "world_size: must be a positive integer"),
        (dict(batch=4, world_size=2, prefix_length=8), "prefix_length: a P-tuning v2 prefix is not sharded"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_memory("llama-tiny", seq_len=32, **kwargs)
