"""Column-major linear weights: only the memory layout differs from ``nn.Linear``'s.

The reference for "nothing else changes" is a contiguous (row-major) copy of
the same model, which is what ``nn.Linear`` and every checkpoint hold.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import archzoo
from archzoo.blocks.experts import StackedExperts
from archzoo.models.weight_layout import is_column_major, matrix_weights, store_column_major


def linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def row_major_copy(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for weight in matrix_weights(twin):
            weight.data = weight.data.contiguous()
    return twin


@pytest.mark.parametrize("name", ["llama-tiny", "qwen2-tiny", "deepseek-tiny", "glm-tiny"])
def test_built_models_store_linear_weights_column_major_with_linear_shapes(name):
    model = archzoo.build_model(name)
    for module_name, module in linears(model):
        assert module.weight.shape == (module.out_features, module.in_features), module_name
        if module_name.endswith("kv_b_proj"):  # MLA's per-head up-projection: the one exception
            assert module.weight.is_contiguous(), module_name
        elif min(module.weight.shape) > 1:
            assert module.weight.stride() == (1, module.out_features), module_name


def test_mla_up_projection_stays_row_major_so_absorbed_decoding_reads_heads_in_place():
    model = archzoo.build_model("deepseek-tiny")
    for layer in model.layers:
        assert layer.attn.kv_b_proj.weight.is_contiguous()
        w_uk, w_uv = layer.attn.up_weights()
        assert w_uk.stride()[-1] == 1 and w_uv.stride()[-1] == 1  # rows of r values, contiguous


def test_tied_head_stays_the_embedding_parameter():
    model = archzoo.build_model("qwen2-tiny")
    assert model.lm_head.weight is model.embed.weight
    assert is_column_major(model.embed.weight)
    # embedding lookups read the same rows as from a row-major table
    ids = torch.tensor([[0, 5, 17]])
    assert torch.equal(model.embed(ids), model.embed.weight.detach().contiguous()[ids])


@pytest.mark.parametrize("name", ["llama-tiny", "bloom-tiny", "qwen3-moe-tiny", "deepseek-v2-tiny"])
def test_logits_equal_a_row_major_copy(name):
    torch.manual_seed(0)
    model = archzoo.build_model(name).eval()
    twin = row_major_copy(model)
    assert not any(is_column_major(w) for w in matrix_weights(twin) if min(w.shape[-2:]) > 1)
    ids = torch.randint(0, model.config.model.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), twin(ids), rtol=1e-5, atol=1e-5)


def test_dtype_cast_and_state_dict_round_trip_keep_the_layout():
    model = archzoo.build_model("llama-tiny")
    model.to(torch.bfloat16)
    assert all(is_column_major(m.weight) for _, m in linears(model))
    fresh = archzoo.build_model("llama-tiny", dtype=torch.bfloat16)
    fresh.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    assert all(is_column_major(m.weight) for _, m in linears(fresh))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


def test_loaded_checkpoints_are_column_major_and_save_back_identically(tmp_path):
    model = archzoo.build_model("llama-tiny")
    archzoo.save_pretrained(model, tmp_path / "ckpt")
    loaded = archzoo.load_pretrained(tmp_path / "ckpt")
    assert all(is_column_major(m.weight) for _, m in linears(loaded))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_meta_models_are_left_alone_and_the_call_is_idempotent():
    model = archzoo.build_model("deepseek-tiny", device="meta")
    store_column_major(model)
    assert all(m.weight.is_meta for _, m in linears(model))
    real = archzoo.build_model("llama-tiny")
    before = {name: m.weight.data_ptr() for name, m in linears(real)}
    store_column_major(real)
    assert before == {name: m.weight.data_ptr() for name, m in linears(real)}


def test_training_step_runs_on_column_major_weights():
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    twin = row_major_copy(model)
    ids = torch.randint(0, model.config.model.vocab_size, (2, 8))
    for m in (model, twin):
        m(ids).logsumexp(-1).mean().backward()
    for (name, a), (_, b) in zip(linears(model), linears(twin)):
        torch.testing.assert_close(a.weight.grad, b.weight.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_stacked_experts_are_column_major_per_expert():
    model = archzoo.build_model("qwen3-moe-tiny")
    experts = [m for m in model.modules() if isinstance(m, StackedExperts)]
    assert experts
    for m in experts:
        e, out, inp = m.gate_up_proj.shape
        assert (e, out, inp) == (m.n_experts, 2 * m.hidden, m.d_model)
        assert m.gate_up_proj.stride() == (out * inp, 1, out)
        assert is_column_major(m.down_proj)
    # each expert's matrix is a column-major [out, in] block: expert 1 starts after expert 0's values
    assert experts[0].gate_up_proj[1].data_ptr() - experts[0].gate_up_proj[0].data_ptr() == out * inp * 4


def test_matrix_weights_lists_tied_weights_once():
    model = archzoo.build_model("qwen2-tiny")
    weights = matrix_weights(model)
    assert len(weights) == len({id(w) for w in weights})
    assert any(w is model.embed.weight for w in weights)
