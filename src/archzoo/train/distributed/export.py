"""The finished run's artefact from a sharded model: one whole model on rank 0.

``get_model_state_dict(..., full_state_dict=True, cpu_offload=True)`` all-gathers every
parameter, one at a time, and keeps the whole tensors on rank 0's CPU only. Rank 0
then builds the same model unsharded on ``meta`` (the config, the fast blocks, the
method's adapters), moves it to empty CPU memory and loads the gathered tensors
into it, every key checked. That plain model is what ``method.save`` writes: a
Hugging Face folder (``save_pretrained``) for full training, or PEFT's adapter
folder for LoRA. Saving from the sharded model itself would write each process's
shards (or, for an adapter, nothing: the known way to get empty adapter files
under FSDP); gathering first avoids both.
"""

from __future__ import annotations

import torch
from torch import nn

from ...errors import CheckpointError
from ...fast import use_implementation
from ...models.decoder import CausalLM
from .env import DistEnv


def gather_model(trainer, env: DistEnv) -> nn.Module | None:
    """The trained model, whole and unsharded, on rank 0 (None on the others). Every process calls it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sharded = trainer.model
    full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not env.is_main:
        return None
    dtype = next(iter(full.values())).dtype if full else torch.float32
    with torch.device("meta"):
        plain = CausalLM(sharded.config)
        use_implementation(plain, "fast")
        trainer.method.prepare(plain)
    plain.to(dtype).to_empty(device="cpu")
    if sharded.config.model.tie_embeddings:
        plain.lm_head.weight = plain.embed.weight  # to_empty keeps the tie; say it anyway
    own = plain.state_dict()
    missing, unexpected = sorted(set(own) - set(full)), sorted(set(full) - set(own))
    tied = {"lm_head.weight"} if sharded.config.model.tie_embeddings else set()
    if set(missing) - tied or unexpected:
        raise CheckpointError(f"gathering the sharded model: keys differ (missing {missing[:5]}, unexpected {unexpected[:5]})")
    with torch.no_grad():
        for key, value in full.items():
            own[key].copy_(value)
    for name, p in plain.named_parameters():
        p.requires_grad_(dict(sharded.named_parameters())[name].requires_grad)
    if getattr(sharded, "hf_architecture", None):
        plain.hf_architecture = sharded.hf_architecture
    return plain.eval()
