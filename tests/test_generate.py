"""``archzoo.generate``: cached greedy decoding equals recomputing everything each step,
left padding changes nothing, eos and sampling filters behave as Hugging Face's."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

import archzoo
from archzoo.config import config_paths
from archzoo.config.sections import PositionKind
from archzoo.generate import DECODE_SCHEMES, filter_logits, generate
from archzoo.glm.decode import GLMPrefixPositions

TINY = sorted(name for name in config_paths() if name.endswith("-tiny"))


def tiny_model(name: str) -> archzoo.CausalLM:
    cfg = archzoo.load_config(name)
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init_std=0.1))
    torch.manual_seed(0)
    return archzoo.build_model(cfg).eval()


def prompt(cfg, length: int, seed: int) -> torch.Tensor:
    """Random ids; for glm2d models the prompt ends in [gMASK] <sop> and nothing else is special."""
    ids = torch.randint(0, cfg.model.vocab_size, (length,), generator=torch.Generator().manual_seed(seed))
    if cfg.position.kind == "glm2d":
        t = cfg.tokens
        for special in (t.gmask_id, t.mask_id, t.sop_id):
            ids[ids == special] = 1
        ids[-2:] = torch.tensor([t.gmask_id, t.sop_id])
    return ids


def uncached_greedy(model, ids: torch.Tensor, steps: int) -> torch.Tensor:
    """The definition: run the whole sequence every step, take the argmax of the last logits."""
    cfg = model.config
    seq = ids[None]
    for _ in range(steps):
        if cfg.position.kind == "glm2d":
            from archzoo.glm import prefix_lm_inputs

            t = cfg.tokens
            inputs = prefix_lm_inputs(seq, gmask_id=t.gmask_id, mask_id=t.mask_id, sop_id=t.sop_id)
            logits = model(seq, inputs.attention_mask, inputs.position_ids)
        else:
            logits = model(seq)
        seq = torch.cat((seq, logits[:, -1].argmax(-1, keepdim=True)), dim=1)
    return seq[0, len(ids) :]


def test_decode_schemes_cover_every_position_kind():
    assert set(DECODE_SCHEMES) == set(typing.get_args(PositionKind))


@pytest.mark.parametrize("name", TINY)
def test_greedy_equals_uncached_argmax_and_padding_changes_nothing(name: str):
    model = tiny_model(name)
    prompts = [prompt(model.config, n, seed) for seed, n in enumerate((7, 4, 5))]
    steps = 8
    with torch.no_grad():
        expected = [uncached_greedy(model, p, steps) for p in prompts]
    width = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), width, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = p
        mask[row, width - len(p) :] = 1
    batched = generate(model, ids, steps, attention_mask=mask)
    assert batched.shape == (3, steps)
    for row in range(3):
        assert batched[row].tolist() == expected[row].tolist()
        alone = generate(model, prompts[row][None], steps)
        assert alone[0].tolist() == expected[row].tolist()


def test_finished_rows_keep_emitting_eos_and_decoding_stops_when_all_finished():
    model = tiny_model("llama-tiny")
    ids = torch.stack([prompt(model.config, 6, 0), prompt(model.config, 6, 1)])
    free = generate(model, ids, 6)
    eos = int(free[0, 1])  # row 0 emits it at step 1
    assert eos not in free[1].tolist(), "pick prompts whose second row never emits this token"
    out = generate(model, ids, 6, eos_id=eos)
    assert out[0].tolist() == free[0, :2].tolist() + [eos] * 4
    assert out[1].tolist() == free[1].tolist()
    alone = generate(model, ids[:1], 6, eos_id=eos)
    assert alone.tolist() == [free[0, :2].tolist()]  # every row finished: stop early


def test_top_k_and_top_p_filters_match_transformers():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    for k in (1, 5, 50):
        ours = filter_logits(logits, k, None)
        theirs = TopKLogitsWarper(top_k=k)(None, logits.clone())
        assert torch.equal(ours.isinf(), theirs.isinf()), k
    for p in (0.05, 0.5, 0.9, 0.99):
        ours = filter_logits(logits, None, p)
        theirs = TopPLogitsWarper(top_p=p)(None, logits.clone())
        assert torch.equal(ours.isinf(), theirs.isinf()), p


def test_nucleus_worked_example():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    assert filter_logits(logits, None, 0.7).isinf().tolist() == [[False, False, True]]  # 0.5 + 0.3 reaches 0.7
    assert filter_logits(logits, None, 0.5).isinf().tolist() == [[False, True, True]]


def test_sampling_is_reproducible_and_top_k_1_is_greedy():
    model = tiny_model("llama-tiny")
    ids = prompt(model.config, 5, 3)[None]
    a = generate(model, ids, 10, temperature=1.0, generator=torch.Generator().manual_seed(7))
    b = generate(model, ids, 10, temperature=1.0, generator=torch.Generator().manual_seed(7))
    assert a.tolist() == b.tolist()
    greedy = generate(model, ids, 10)
    assert generate(model, ids, 10, temperature=0.7, top_k=1).tolist() == greedy.tolist()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attention_mask": torch.tensor([[1, 1, 0]])}, "left padding"),
        ({"attention_mask": torch.tensor([[1, 1]])}, r"attention_mask: a padding mask must be \[batch, past \+ seq\]"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    model = tiny_model("llama-tiny")
    with pytest.raises(ValueError, match=match):
        generate(model, torch.tensor([[1, 2, 3]]), 4, **kwargs)


@pytest.mark.parametrize("name", ["llama-tiny", "bloom-tiny", "deepseek-tiny", "chatglm2-tiny"])
def test_a_model_that_generated_can_still_be_trained(name):
    """Position tables cached during ``generate`` (inference mode) must not be inference
    tensors: autograd saves them in a later training forward."""
    model = tiny_model(name)
    ids = prompt(model.config, 6, seed=0)[None]
    generate(model, ids, 3)
    model.train()
    model(ids).logsumexp(-1).mean().backward()  # raised "Inference tensors cannot be saved for backward"
    model(ids[:, :1]).logsumexp(-1).mean().backward()  # one token: ALiBi's cached ramp
    assert model.lm_head.weight.grad is not None


@pytest.mark.parametrize("missing", [{"sop_id": None}, {"gmask_id": None, "mask_id": None}])
def test_glm2d_prompt_without_its_special_ids_is_refused_by_name(missing):
    """A glm2d prompt ends in [gMASK] <sop>: without those ids the prompt cannot be completed
    (it used to append None and fail deep inside torch.tensor)."""
    cfg = archzoo.load_config("glm-tiny")
    cfg = cfg.replace(tokens=dataclasses.replace(cfg.tokens, **missing))
    with pytest.raises(archzoo.InputError, match="sop_id and gmask_id"):
        GLMPrefixPositions.complete_prompt([1, 2, 3], cfg)
    with pytest.raises(archzoo.InputError, match="sop_id and gmask_id"):
        archzoo.generate(archzoo.build_model(cfg), torch.tensor([[1, 2, 3]]), 2)
