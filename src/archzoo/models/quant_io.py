"""Saving and loading quantized models: archzoo's tensors by archzoo's names, the recipe in config.json.

A quantized folder is the float model's ``config.json`` (the architecture's
own fields, so ``load_pretrained`` knows the family and sizes) plus

    "quantization_config": {"quant_method": "archzoo", "mode": "int8" | "int4",
                            "group_size": g (int4; null: one group per row) | null, "skip": [...],
                            "embeddings": bool, "symmetric": true (int4 without mins; absent: false),
                            "layout": "..."}

and ``model.safetensors`` holding ``model.state_dict()`` under archzoo's module
names (not the Hugging Face names: the fused / stacked weight rules of each
family work on float matrices, and a quantized matrix is three tensors), one
entry per stored tensor:

    <linear>.qweight   int8 [out, in]                   (int8)
                       uint8 [out, ceil(in / 2)]        (int4: column 2j low nibble, 2j+1 high)
    <linear>.scales    float [out] (int8) | [out, ceil(in / g)] (int4)
    <linear>.mins      float [out, ceil(in / g)]        (min-max int4 only: W' = scales q + mins;
                                                        symmetric int4: W' = scales (q - 8), no mins)
    <linear>.bias      float [out]                      (when the layer has one)
    <experts>.gate_up_proj.qweight / .scales / .mins    the same, with a leading expert dim
    everything else    as the float model stores it (embedding, norms, router, skipped layers)

A tied table is stored once: with a quantized tied head and embedding, the
embedding's ``embed.table.*`` is the head's ``lm_head.*``; with the head left
float, ``lm_head.weight`` is ``embed.weight``. Loading builds the model on
``meta``, quantizes it with the recorded recipe (which allocates nothing
there) and adopts the file's tensors, so every shape and dtype is checked.
``transformers`` does not read this format.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import Config
from ..errors import CheckpointError
from .decoder import CausalLM
from .quantize import is_quantized, quantize

LAYOUT = "archzoo weight-only v1: see archzoo/models/quant_io.py"


def quantized_state(model: CausalLM) -> dict[str, torch.Tensor]:
    """The tensors a quantized folder stores (each shared tensor once)."""
    state = model.state_dict()
    embed_table = getattr(model.embed, "table", None)
    if embed_table is not None and embed_table is getattr(model, "lm_head", None):
        state = {k: v for k, v in state.items() if not k.startswith("embed.table.")}
    if isinstance(model.lm_head, nn.Linear) and model.lm_head.weight is getattr(model.embed, "weight", None):
        state.pop("lm_head.weight", None)
    return state


def recipe(model: CausalLM) -> dict:
    if not is_quantized(model) or getattr(model, "quantization", None) is None:
        raise CheckpointError("model: not quantized by archzoo.quantize; nothing to save in the quantized layout")
    return {"quant_method": "archzoo", **model.quantization, "layout": LAYOUT}


def load_quantized(cfg: Config, hf_config: dict, state: dict[str, torch.Tensor], folder: Path) -> CausalLM:
    """A quantized model from a folder's recipe and tensors (CheckpointError naming the file)."""
    where = f"{folder}/config.json: quantization_config"
    q = hf_config["quantization_config"]
    if q.get("quant_method") != "archzoo" or q.get("mode") not in ("int8", "int4"):
        raise CheckpointError(f"{where}: not archzoo's weight-only layout (quant_method 'archzoo', mode int8|int4)")
    return adopt_quantized(cfg, q, state, folder, where)


def adopt_quantized(cfg: Config, q: dict, state: dict[str, torch.Tensor], folder: Path, where: str) -> CausalLM:
    """The model of ``cfg`` quantized by recipe ``q`` (``quantize``'s arguments: mode, group_size, skip,
    embeddings, symmetric) holding ``state`` (archzoo's names), every key, shape and integer dtype
    checked; errors name ``folder``'s weights and ``where`` the recipe came from."""
    with torch.device("meta"):
        model = CausalLM(cfg)
    group_size = q.get("group_size") if q["mode"] == "int4" else 128  # int4 null: one group per row
    quantize(model, q["mode"], group_size, tuple(q.get("skip", ())), embeddings=bool(q.get("embeddings")),
             symmetric=bool(q.get("symmetric")), implementation="reference")  # load_pretrained picks the form
    expected = set(quantized_state(model))
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}: weights do not match {where} (missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
    shapes = model.state_dict()
    # shapes must match; integer codes their dtype exactly; floats may be any float dtype (a bf16
    # model saves bf16 scales and norms; the meta model is float32), adopted as stored
    wrong = [
        k for k, v in state.items()
        if v.shape != shapes[k].shape or v.is_floating_point() != shapes[k].is_floating_point()
        or (not v.is_floating_point() and v.dtype != shapes[k].dtype)
    ]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{folder}/model.safetensors: {k} is {state[k].dtype} {list(state[k].shape)}, "
                              f"the recipe stores {shapes[k].dtype} {list(shapes[k].shape)}")
    model.load_state_dict(state, strict=False, assign=True)
    if isinstance(model.lm_head, nn.Linear) and "lm_head.weight" not in state:
        model.lm_head.weight = model.embed.weight  # a float head tied to the float embedding
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise CheckpointError(f"{folder}/model.safetensors: tensors left unset: {still_meta[:5]}")
    return model
