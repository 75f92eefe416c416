"""``estimate_memory``'s per-sublayer terms against what autograd actually saves.

``inspect/saved_activations.py`` counts, per token, what a decoder layer's attention (``attention_bytes``)
and feed-forward (``mlp_bytes``) sublayers keep for the backward pass. Autograd's saved-tensor
hooks see every tensor a forward saves; this file sums their storages inside one sublayer of the
last decoder layer of every tiny config, in each precision, and compares.

Not the sublayer's own, so not counted on the measured side: the parameters and autocast's bfloat16
copies of them (``training_step_memory`` counts those with the weights), the sublayer's input (counted
with the norm that made it, with one bfloat16 cast of it under autocast: ``norm_bytes``), and what the
layer before saved too (the RoPE tables, ALiBi's bias: made once per forward, shared by every layer).
The estimate leaves out one thing that is per layer: SDPA turns a boolean mask into a float copy of
it, [1, 1, s, s], and saves it; added here as such.
"""

from __future__ import annotations

import pytest
import torch

import archzoo
from archzoo.inspect.saved_activations import attention_bytes, mlp_bytes, sdpa_output_copied

TINY = [
    "llama-tiny", "qwen2-tiny", "qwen3-tiny", "baichuan-tiny", "bloom-tiny", "chatglm2-tiny", "glm-tiny",
    "deepseek-tiny", "deepseek-v2-tiny", "qwen2-moe-tiny", "qwen3-moe-tiny",
]  # fmt: skip
BATCH, SEQ = 3, 37  # no model width is 3, 37 or 111, so a saved tensor without them holds no tokens


def saved_by(model: torch.nn.Module, part: str, ids: torch.Tensor, autocast: bool) -> list[tuple[int, torch.Tensor]]:
    """(storage bytes, tensor) saved inside ``part`` ("attn" or "mlp") of the last decoder layer, each
    storage once, without parameters, their bfloat16 copies, the sublayer's input and what the layer
    before saved as well."""
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    per_layer = []
    for layer in model.layers[-2:]:
        module, saved = getattr(layer, part), {}
        forward = type(module).forward

        def hooked(self, x, *args, saved=saved, forward=forward, **kwargs):
            def pack(t):
                storage = t.untyped_storage()
                weight_copy = autocast and t.dtype == torch.bfloat16 and not {BATCH, SEQ, BATCH * SEQ} & set(t.shape)
                if storage._cdata not in params and storage._cdata != x.untyped_storage()._cdata and not weight_copy:
                    saved[storage._cdata] = (storage.nbytes(), t)
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                return forward(self, x, *args, **kwargs)

        module.forward = hooked.__get__(module)
        per_layer.append(saved)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        model(ids)
    before, last = per_layer
    return [entry for key, entry in last.items() if key not in before]


def tiny_model(name: str, precision: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = archzoo.build_model(name).train()
    return model.to(torch.bfloat16) if precision == "bf16-pure" else model


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-pure"])
@pytest.mark.parametrize("name", TINY)
def test_attention_keeps_what_attention_bytes_counts(name, precision):
    model = tiny_model(name, precision)
    ids = torch.randint(0, model.config.model.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    saved = saved_by(model, "attn", ids, autocast=precision == "bf16")
    masks = sum(size for size, t in saved if t.shape[-2:] == (SEQ, SEQ) and t.shape[:2] == (1, 1))
    measured = sum(size for size, _ in saved) - masks
    block = model.layers[-1].attn
    expected = attention_bytes(block, precision, sdpa_output_copied(model.config)) * BATCH * SEQ
    if precision == "bf16":
        expected += 2 * model.config.model.d_model * BATCH * SEQ  # the input's cast that norm_bytes counts
    assert masks <= 4 * SEQ * SEQ  # at most the one float copy of the boolean mask
    # equal to the byte on every config with torch 2.13; 1% leaves room for a per-row statistic another
    # torch version saves or not (4 bytes a row and head, against hundreds of bytes a token)
    assert measured == pytest.approx(expected, rel=0.01), [(size, tuple(t.shape), t.dtype) for size, t in saved]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-pure"])
@pytest.mark.parametrize("name", TINY)
def test_the_feed_forward_keeps_what_mlp_bytes_counts(name, precision):
    model = tiny_model(name, precision)
    ids = torch.randint(0, model.config.model.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    measured = sum(size for size, _ in saved_by(model, "mlp", ids, autocast=precision == "bf16"))
    expected = mlp_bytes(model.config, precision, model.layers[-1].plan.mlp == "moe") * BATCH * SEQ
    if precision == "bf16":
        expected += 2 * model.config.model.d_model * BATCH * SEQ  # the input's cast that norm_bytes counts
    # dense: equal to the byte (1%: as above); MoE within 1.2% with torch 2.13: what the estimate leaves
    # out is not per token (the router's float32 copy of its weight under bf16-pure, the per-expert
    # counts) or is an int64 torch may keep or drop, so 2%
    assert measured == pytest.approx(expected, rel=0.02 if model.layers[-1].plan.mlp == "moe" else 0.01)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-pure"])
@pytest.mark.parametrize("name", TINY)
def test_a_frozen_base_keeps_what_the_adapter_estimate_counts(name, precision):
    """LoRA and prefix training freeze the base: a frozen projection keeps nothing of its input and a
    frozen norm gain no normalized copy (``inspect/adapter_memory.py``). Measured with every parameter
    frozen and the embedding's output requiring a gradient, as the adapters' make it flow."""
    from archzoo.inspect.adapter_memory import frozen_attention_bytes, frozen_mlp_bytes

    model = tiny_model(name, precision).requires_grad_(False)
    model.embed.register_forward_hook(lambda module, inputs, output: output.requires_grad_())
    ids = torch.randint(0, model.config.model.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    autocast = precision == "bf16"
    attention = [(size, t) for size, t in saved_by(model, "attn", ids, autocast) if t.shape[-2:] != (SEQ, SEQ)]
    mlp = saved_by(model, "mlp", ids, autocast)
    moe = model.layers[-1].plan.mlp == "moe"
    tokens = BATCH * SEQ
    assert sum(size for size, _ in attention) == pytest.approx(frozen_attention_bytes(model.layers[-1].attn, precision) * tokens, rel=0.01)
    # the bounds as above
    assert sum(size for size, _ in mlp) == pytest.approx(frozen_mlp_bytes(model.config, precision, moe) * tokens, rel=0.02 if moe else 0.01)
