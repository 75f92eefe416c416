"""The model of a multi-process run: built on ``meta``, sharded, then materialised shard by shard.

The same steps as one process's ``build_source_model`` + ``method.prepare`` (``run.py``),
in the same order, so the RNG stream and hence every weight is the same
(``init_by_parts.py``):

    torch.manual_seed(seed); CausalLM(cfg) on meta      constructors' draws replayed
    init_weights(model)                                 the model's own init, replayed
    use_implementation(model, "fast")                   re-classes blocks, no draw
    method.prepare(model)                               LoRA: adapters added; A drawn, B = 0
    model.to(bf16)                                      bf16-pure only
    fully_shard(layers), fully_shard(root)              ``shard.py``
    to_empty + each shard filled                        at most one full tensor at a time

A Hugging Face folder (fine-tuning) is read by each process with
``load_pretrained`` and then sharded: its tensors exist whole while loading (the
weight conversion rules work on whole tensors).
"""

from __future__ import annotations

import torch
from torch import nn

from ...config import Config
from ...fast import use_implementation
from ...models.decoder import CausalLM, init_weights
from ..precision import model_dtype
from .env import DistEnv
from .init_by_parts import Replay, fill_shards, recorded_values
from .shard import shard_model


def build_sharded(source: dict, seed: int, method, env: DistEnv, precision: str) -> nn.Module:
    """The sharded, materialised model of run.json's ``source`` with ``method`` prepared."""
    from ..run import build_source_model

    if "checkpoint" in source:
        model = build_source_model(source, seed)
        method.prepare(model)
        model.to(model_dtype(precision))
        return shard_model(model.to(env.device), precision)
    replay = Replay(env.rank, env.world)
    torch.manual_seed(seed)
    with replay, torch.device("meta"):
        model = CausalLM(Config.from_dict(source["config_dict"], source["config"]))
        with torch.no_grad():
            init_weights(model)
        use_implementation(model, "fast")
        method.prepare(model)  # LoRALinear draws its A under Replay as on the CPU
    values = recorded_values(model, replay)
    model.to(model_dtype(precision))
    shard_model(model, precision)
    fill_shards(model, values, env.device)
    return model
