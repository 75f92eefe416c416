"""Shared fixtures. Parity tests build ``transformers`` models from small configs
with random weights, save them to a temp folder and load that folder."""

from __future__ import annotations

import pytest
import torch

# The tests run tiny models, where OpenMP's thread hand-offs cost more than they
# save: on the 2-core CI machine one thread ran the suite in under a minute,
# two threads took several (their spin-waits collide with any other load).
torch.set_num_threads(1)


def perturb_norms_and_biases(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Move every 1-D parameter (norm gains, biases) away from its 1 / 0 default,
    so a converter that drops or swaps one of them fails parity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(torch.randn(param.shape, generator=generator) * scale)


@pytest.fixture
def hf_folder(tmp_path):
    """``hf_folder(model)`` -> a folder holding ``model.save_pretrained`` output
    (1-D parameters perturbed first)."""
    count = 0

    def save(model, perturb: bool = True, **kwargs):
        nonlocal count
        count += 1
        if perturb:
            perturb_norms_and_biases(model, seed=count)
        model.eval()
        folder = tmp_path / f"hf{count}"
        model.save_pretrained(folder, **kwargs)
        return folder

    return save


@pytest.fixture
def padded_batch():
    """``padded_batch(vocab, seq)`` -> (input_ids [3, seq], attention_mask) with
    rows of different lengths: full, left-padded by 3, left-padded by 5."""

    def make(vocab: int, seq: int = 12, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, vocab, (3, seq), generator=generator)
        mask = torch.ones(3, seq, dtype=torch.long)
        mask[1, :3] = 0
        mask[2, :5] = 0
        return ids, mask

    return make
