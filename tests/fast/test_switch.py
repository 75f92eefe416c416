"""The implementation switch and plain PyTorch weights on both paths."""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.errors import InputError
from archzoo.fast import FAST_FORMS


@pytest.mark.parametrize("implementation", ["reference", "fast"])
def test_weights_are_plain_row_major_tensors(implementation, tmp_path):
    torch.manual_seed(0)
    model = archzoo.build_model("qwen3-moe-tiny", implementation=implementation)
    for name, param in model.named_parameters():
        assert param.is_contiguous(), name
    head = model.lm_head.weight
    assert torch.equal(head.view(-1)[: head.shape[1]], head[0])  # .view works as for any nn.Linear
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    torch.manual_seed(1)
    other = archzoo.build_model("qwen3-moe-tiny", implementation=implementation)
    other.load_state_dict(torch.load(tmp_path / "weights.pt"))
    ids = torch.randint(0, 256, (1, 6))
    with torch.no_grad():
        assert torch.equal(other(ids), model(ids))


def test_load_pretrained_takes_the_same_keyword(tmp_path):
    torch.manual_seed(0)
    folder = archzoo.save_pretrained(archzoo.build_model("llama-tiny"), tmp_path / "ckpt")
    fast = archzoo.load_pretrained(folder)
    reference = archzoo.load_pretrained(folder, implementation="reference")
    assert fast.implementation == "fast" and reference.implementation == "reference"
    assert {type(m) for m in fast.modules()} & set(FAST_FORMS.values())
    assert not {type(m) for m in reference.modules()} & set(FAST_FORMS.values())
    ids = torch.randint(0, 256, (2, 7))
    with torch.no_grad():
        diff = (fast(ids) - reference(ids)).abs().max().item()
    assert diff <= 1e-6  # see tests/fast/test_models_equal.py for this tolerance


@pytest.mark.parametrize("call", ["build", "load"])
def test_a_bad_implementation_is_a_clear_error(call, tmp_path):
    with pytest.raises(InputError, match="implementation: must be one of 'reference', 'fast', got 'eager'"):
        if call == "build":
            archzoo.build_model("llama-tiny", implementation="eager")
        else:
            archzoo.load_pretrained(tmp_path, implementation="eager")
