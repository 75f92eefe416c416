"""Bad arguments to forward and generate are InputErrors naming the argument; the
max_seq_len policy (warn once, then extrapolate); validation skipped in generate's
decode loop without changing a single token."""

from __future__ import annotations

import warnings

import pytest
import torch

import archzoo
from archzoo import InputError
from archzoo.models.inputs import LongSequenceWarning, trusted_inputs

torch.manual_seed(0)
MODELS = {name: archzoo.build_model(name).eval() for name in ("llama-tiny", "bloom-tiny", "glm-tiny", "deepseek-tiny")}


def ids_for(model, batch=2, seq=5):
    return torch.randint(0, model.config.model.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))


def forward_cases(model):
    vocab = model.config.model.vocab_size
    ids = ids_for(model)
    ones = torch.ones(2, 5, dtype=torch.long)
    return [
        ("input_ids", "outside the vocabulary", lambda: model(torch.full((1, 3), vocab))),
        ("input_ids", "outside the vocabulary", lambda: model(torch.full((1, 3), -1))),
        ("input_ids", "integer", lambda: model(ids.float())),
        ("input_ids", "seq >= 1", lambda: model(ids[:, :0])),
        ("input_ids", "batch >= 1", lambda: model(ids[:0])),
        ("input_ids", "[batch >= 1, seq >= 1]", lambda: model(ids[0])),
        ("input_ids", "torch.Tensor", lambda: model([[1, 2, 3]])),
        # an additive mask of zeros means "attend everywhere"; read as 0/1 it would mean "nothing"
        ("attention_mask", "float mask is ambiguous", lambda: model(ids, attention_mask=torch.zeros(2, 5))),
        ("attention_mask", "0 or 1", lambda: model(ids, attention_mask=ones * 2)),
        ("attention_mask", "0 or 1", lambda: model(ids, attention_mask=-ones)),
        ("attention_mask", "[2, 5]", lambda: model(ids, attention_mask=ones[:1])),  # no batch-1 broadcast
        ("attention_mask", "[2, 5]", lambda: model(ids, attention_mask=ones[:, :4])),
        ("attention_mask", "boolean", lambda: model(ids, attention_mask=torch.ones(2, 5, 5, dtype=torch.long))),
        ("attention_mask", "[2, 5, 5]", lambda: model(ids, attention_mask=torch.ones(1, 5, 5, dtype=torch.bool))),
        ("logits_to_keep", ">= 0", lambda: model(ids, logits_to_keep=-1)),
        ("logits_to_keep", "int", lambda: model(ids, logits_to_keep=2.5)),
    ]


def position_cases(model):
    ids = ids_for(model)
    arange = torch.arange(5)[None].expand(2, 5)
    if model.config.position.kind == "alibi":  # distances only: steps other than 1 cannot be honoured
        return [("position_ids", "1 position apart", lambda: model(ids, position_ids=arange * 2))]
    return [
        ("position_ids", ">= 0", lambda: model(ids, position_ids=arange - 1)),
        ("position_ids", "integers", lambda: model(ids, position_ids=arange.float())),
        ("position_ids", "got [1, 4]", lambda: model(ids, position_ids=torch.arange(4)[None])),
        ("position_ids", "got [3, 5]", lambda: model(ids, position_ids=torch.arange(5)[None].expand(3, 5))),
    ]


CASES = [
    (name, arg, words, call)
    for name, model in MODELS.items()
    for arg, words, call in forward_cases(model) + position_cases(model)
]


@pytest.mark.parametrize(("name", "arg", "words", "call"), CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_a_bad_forward_argument_is_an_input_error_naming_it(name, arg, words, call):
    with pytest.raises(InputError) as info, torch.no_grad():
        call()
    message = str(info.value)
    assert message.startswith(f"{arg}: ") and words in message, message


@pytest.mark.parametrize("name", list(MODELS))
def test_a_cache_reused_at_another_batch_size_is_refused(name):
    model = MODELS[name]
    cache = model.new_cache(16)
    with torch.no_grad():
        model(ids_for(model, 2, 3), cache=cache)
        with pytest.raises(InputError, match="cache: holds a batch of 2, input_ids has 3"):
            model(ids_for(model, 3, 1), cache=cache)


GENERATE_CASES = [
    ("max_new_tokens", {"max_new_tokens": 2.5}),
    ("max_new_tokens", {"max_new_tokens": -1}),
    ("max_new_tokens", {"max_new_tokens": True}),
    ("temperature", {"temperature": float("nan")}),
    ("temperature", {"temperature": float("inf")}),
    ("temperature", {"temperature": -1.0}),
    ("top_k", {"temperature": 1.0, "top_k": 0}),
    ("top_k", {"temperature": 1.0, "top_k": 2.5}),
    ("top_p", {"temperature": 1.0, "top_p": float("nan")}),
    ("top_p", {"temperature": 1.0, "top_p": 1.5}),
    ("eos_id", {"eos_id": 10**6}),
    ("eos_id", {"eos_id": -1}),
    ("attention_mask", {"attention_mask": torch.full((2, 5), 0.5)}),
    ("attention_mask", {"attention_mask": torch.tensor([[1, 1, 1, 1, 0]] * 2)}),
    ("input_ids", {"input_ids": torch.full((1, 3), 10**6)}),
]


@pytest.mark.parametrize(("arg", "kwargs"), GENERATE_CASES, ids=[f"{a}-{k}" for a, k in GENERATE_CASES])
def test_a_bad_generate_argument_is_an_input_error_naming_it(arg, kwargs):
    model = MODELS["llama-tiny"]
    kwargs = {"input_ids": ids_for(model), "max_new_tokens": 2, **kwargs}
    with pytest.raises(InputError, match=f"^{arg}: "):
        archzoo.generate(model, **kwargs)


@pytest.mark.parametrize("name", ["llama-tiny", "bloom-tiny", "deepseek-tiny"])
def test_past_max_seq_len_warns_once_and_extrapolates(name):
    # RoPE and ALiBi have no table to run out of: the forward works, with one warning per config
    model = MODELS[name]
    limit = model.config.model.max_seq_len
    ids = ids_for(model, 1, limit + 3)
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        logits = model(ids)
        model(ids)
    long = [w for w in caught if issubclass(w.category, LongSequenceWarning)]
    assert len(long) == 1 and f"exceed max_seq_len = {limit}" in str(long[0].message)
    assert torch.isfinite(logits).all() and logits.shape[1] == limit + 3
    with warnings.catch_warnings(record=True) as caught, torch.no_grad():
        warnings.simplefilter("always")
        model(ids[:, :limit])  # at the limit: nothing to say
    assert not [w for w in caught if issubclass(w.category, LongSequenceWarning)]


def test_generate_validates_once_and_decodes_the_same_tokens():
    # trusted_inputs only skips checks; the numbers are the same with and without it
    model = MODELS["llama-tiny"]
    ids = ids_for(model, 2, 4)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    new = archzoo.generate(model, ids, 6, attention_mask=mask)
    with torch.no_grad():
        plain = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
        with trusted_inputs():
            trusted = model(ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    assert torch.equal(plain, trusted)
    assert new[:, 0].tolist() == plain[:, -1].argmax(-1).tolist()
    with trusted_inputs():  # the cheap shape checks still run when trusted
        with pytest.raises(InputError, match="input_ids"):
            model(ids[0])


def test_alibi_honours_position_ids_that_step_by_one():
    # ALiBi is shift-invariant: an offset changes nothing, padding positions are not compared
    model = MODELS["bloom-tiny"]
    ids = ids_for(model, 2, 5)
    arange = torch.arange(5)[None].expand(2, 5)
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        assert torch.equal(model(ids, position_ids=arange + 3), model(ids))
        hf_style = (mask.cumsum(-1) - 1).clamp(min=0)  # 0, 0, 0, 1, 2 in the padded row
        assert torch.equal(model(ids, mask, hf_style), model(ids, mask))


def test_alibi_generate_with_left_padding_needs_no_position_ids():
    # BLOOM's bias depends on cache-slot distances only: padding shifts every real token equally
    model = MODELS["bloom-tiny"]
    ids = ids_for(model, 1, 4)
    padded = torch.cat((torch.zeros(1, 2, dtype=torch.long), ids), 1)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1]])
    assert archzoo.generate(model, padded, 5, attention_mask=mask).tolist() == archzoo.generate(model, ids, 5).tolist()
