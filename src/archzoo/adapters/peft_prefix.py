"""P-tuning v2 prefixes <-> PEFT's PREFIX_TUNING files.

PEFT stores the computed table of keys and values as one tensor,
``prompt_embeddings`` ``[P, n_layers x 2 x token_dim]`` (token_dim = kv heads x
head_dim; layer l's key at block 2l, its value at 2l + 1), and the config fields
``num_virtual_tokens`` = P, ``num_layers``, ``token_dim``, ``num_attention_heads``
(the kv heads). That is exactly archzoo's ``PrefixEncoder.table()``.

A prefix with a projection is also saved as its table (what PEFT saves, and
what inference needs); the projection's own weights, which PEFT does not save,
are kept beside it under ``archzoo.prefix.*`` (PEFT ignores them) so that
``load_adapter`` can continue training through the projection.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CheckpointError, InputError
from .prefix import add_prefix

TABLE = "prompt_embeddings"
OWN = "archzoo.prefix."


def prefix_to_peft(model: nn.Module) -> tuple[dict, dict[str, torch.Tensor], dict[str, str]]:
    prefix = model.prefix
    with torch.no_grad():
        tensors = {TABLE: prefix.table().detach().contiguous().cpu()}
        if prefix.transform is not None:
            tensors.update({OWN + k: v.detach().contiguous().cpu() for k, v in prefix.state_dict().items()})
    config = {
        "peft_type": "PREFIX_TUNING",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": model.config.name,
        "num_virtual_tokens": prefix.length,
        "num_layers": prefix.n_layers,
        "token_dim": prefix.token_dim,
        "num_attention_heads": prefix.n_kv_heads,
        "num_transformer_submodules": 1,
        "prefix_projection": prefix.transform is not None,
        "encoder_hidden_size": prefix.projection_hidden or prefix.token_dim,
        "inference_mode": True,
    }
    return config, tensors, {"format": "pt"}


def prefix_from_peft(model: nn.Module, config: dict, tensors: dict[str, torch.Tensor], metadata: dict, where: str) -> None:
    cfg = model.config
    expected = {"num_layers": cfg.model.n_layers, "token_dim": cfg.n_kv_heads * cfg.head_dim, "num_attention_heads": cfg.n_kv_heads}
    for field, value in expected.items():
        if config.get(field) not in (None, value):
            raise CheckpointError(f"{where}: {field} = {config.get(field)} but {cfg.name} needs {value}")
    if config.get("num_transformer_submodules", 1) != 1:
        raise CheckpointError(f"{where}: num_transformer_submodules must be 1 (a decoder-only model)")
    if TABLE not in tensors:
        raise CheckpointError(f"{where}: the adapter has no {TABLE!r} tensor")
    table = tensors[TABLE]
    length = int(config.get("num_virtual_tokens") or table.shape[0])
    width = cfg.model.n_layers * 2 * expected["token_dim"]
    if tuple(table.shape) != (length, width):
        raise CheckpointError(f"{where}: {TABLE} is {list(table.shape)}, expected [{length}, {width}] for {cfg.name}")
    own = {k.removeprefix(OWN): v for k, v in tensors.items() if k.startswith(OWN)}
    hidden = int(config.get("encoder_hidden_size") or 0) if own else 0
    if getattr(model, "prefix", None) is None:
        add_prefix(model, length, projection=hidden or False)
    elif model.prefix.length != length or (model.prefix.projection_hidden or 0) != hidden:
        raise InputError(f"model: its prefix (length {model.prefix.length}) does not match {where} (length {length})")
    with torch.no_grad():
        if own:
            model.prefix.load_state_dict(own)
        else:
            model.prefix.embedding.weight.copy_(table)
