"""Inspect a config without allocating it: parameters, memory, KV cache, FLOPs.

params.py   count_params: total, per component, active, buffers, MTP
memory.py   estimate_memory: weights, KV cache, inference and training bytes
activations.py  activation bytes of a training step (Korthikanti et al. 2022, adapted)
flops.py    FLOPs per token (Kaplan et al. 2020's 6N rule plus attention)
blocks.py   one block alone at a stated size: params, FLOPs, KV bytes, CPU time
"""

from .flops import FlopsReport, estimate_flops
from .memory import (
    BYTES_PER_VALUE,
    WEIGHT_DTYPES,
    MemoryReport,
    dtype_bytes,
    estimate_memory,
    kv_bytes_per_token,
    kv_values_per_token_per_layer,
)
from .params import COMPONENTS, ParamReport, count_params

__all__ = [
    "BYTES_PER_VALUE",
    "COMPONENTS",
    "WEIGHT_DTYPES",
    "FlopsReport",
    "MemoryReport",
    "ParamReport",
    "count_params",
    "dtype_bytes",
    "estimate_flops",
    "estimate_memory",
    "kv_bytes_per_token",
    "kv_values_per_token_per_layer",
]
