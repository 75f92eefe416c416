"""estimate_memory's int8 / int4 weight figures are the bytes a quantized model holds, tensor by tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import archzoo
from archzoo.models.quantize import planned_weight_bytes

TINY = sorted(p.stem for p in Path(__file__).resolve().parents[2].joinpath("configs").glob("*/*-tiny.toml"))


def _held_bytes(model: torch.nn.Module) -> int:
    """Bytes of every distinct tensor storage the model's state holds (a tied table counted once)."""
    storages = {}
    for t in [*model.parameters(), *model.buffers()]:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def _non_weight_buffer_bytes(model: torch.nn.Module) -> int:
    """Buffers that are not weights (RoPE tables, ALiBi slopes, router biases): estimate_memory leaves them out."""
    from archzoo.blocks.quant import QuantizedWeight

    quantized = {id(b) for m in model.modules() if isinstance(m, QuantizedWeight) for b in m.buffers(recurse=False)}
    return sum(b.numel() * b.element_size() for b in model.buffers() if id(b) not in quantized)


@pytest.mark.parametrize("name", [*TINY, "qwen2.5-0.5b"])
@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantized_model_bytes_equal_the_estimate(name, mode):
    cfg = archzoo.load_config(name)
    device = "cpu" if "tiny" in name else "meta"  # the small one on meta: same shapes and dtypes, no 1 GB
    model = archzoo.build_model(cfg, device=device, dtype=torch.bfloat16)
    archzoo.quantize(model, mode, group_size=128, implementation="reference")
    if device == "cpu":
        held = _held_bytes(model) - _non_weight_buffer_bytes(model)
    else:  # meta tensors have no storage: count each distinct tensor object
        from archzoo.models.quantize import stored_weight_bytes

        held = stored_weight_bytes(model)
    assert held == archzoo.estimate_memory(cfg, seq_len=16).weight_bytes[mode]


def test_int4_estimate_of_llama2_7b_in_closed_form():
    # Llama-2-7B: 32 layers of q, k, v, o [4096, 4096] and gate, up [11008, 4096], down [4096, 11008];
    # bf16 embedding and head 32000 x 4096, 65 norms of 4096; int4 at g = 128: half a byte per weight
    # plus two bf16 numbers (scale, minimum) per 128 weights of a row
    linear = 32 * (4 * 4096 * 4096 + 3 * 11008 * 4096)
    rows_groups = 32 * (4 * 4096 * 32 + 2 * 11008 * 32 + 4096 * 86)
    floats = 2 * 32000 * 4096 + 65 * 4096
    mem = archzoo.estimate_memory("llama2-7b", seq_len=128, dtype="int4")
    assert mem.weight_bytes["int4"] == linear // 2 + 2 * 2 * rows_groups + 2 * floats
    assert mem.weight_bytes["int8"] == linear + 2 * 32 * (4 * 4096 + 2 * 11008 + 4096) + 2 * floats
    assert mem.kv_bytes_per_token == 32 * 2 * 4096 * 2  # weight-only: the KV cache stays bf16
    assert mem.inference_bytes == mem.weight_bytes["int4"] + mem.kv_cache_bytes


def test_a_quantized_tied_head_keeps_the_float_embedding():
    model = archzoo.build_model("qwen2-tiny", dtype=torch.bfloat16)
    planned = planned_weight_bytes(model, "int8", skip=())
    archzoo.quantize(model, "int8", skip=())
    from archzoo.models.quantize import stored_weight_bytes

    assert planned == stored_weight_bytes(model)
