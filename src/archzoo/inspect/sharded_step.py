"""Per-process peak of one fully sharded (FSDP2) training step on N processes (``archzoo train --nproc N``).

Each process holds 1/N of every parameter, gradient and AdamW moment
(``train/distributed/shard.py``) and computes B/N of the global batch's B windows.
On top of its shards it holds, while computing, whole copies of what FSDP2 gathers
(g = bytes of a gathered value: 4 in fp32, 2 with bf16 parameters):

    R    the root unit (embedding, final norm, head): gathered at the forward's start and
         kept until the backward ends (FSDP2 does not reshard the root after forward)
    Pl   the largest decoder layer: gathered for its forward and again for its backward,
         where the next layer is prefetched while one computes, and the flat all-gather
         buffer of a layer exists beside them: 3 Pl at once in the backward

With S = weights + AdamW moments and G = gradients of one process's training step
(``train_step.py`` at the local batch B/N, activations A and logit gradients L):

    backward starts       S/N + A + L + R
    a layer's backward    S/N + (A - outside) + R + H + 3 Pl     H: the head's whole gradient
                                                                 (full training), kept for the
                                                                 root's reduce-scatter at the end
    root's reduce-scatter S/N + Gl/N + R + W_R + 4 P_R      (full training) the backward's end: the
                                                            root's whole gradients W_R (the head's and
                                                            the embedding's, in the gathered dtype)
                                                            copied into FSDP2's flat float32
                                                            reduce-scatter input (4 P_R bytes, P_R the
                                                            root's parameters) before they are freed;
                                                            Gl/N the layers' gradient shards
    optimizer step        S/N + G/N
    (checkpointing)       S/N + G/N + one layer's activations + R + 3 Pl

and the peak is the largest. ``outside`` is the final norm's and the float32
log-softmax's activations, freed before the layers' backward. Measured against the
live tensor bytes of ``archzoo train --nproc N`` by ``benchmarks/bench_fsdp_memory.py``.
"""

from __future__ import annotations

from collections import Counter

from ..config import Config
from .saved_activations import layer_bytes_per_token, outside_bytes
from .train_step import TrainingStepMemory, training_step_memory


def unit_params(cfg: Config) -> tuple[int, int]:
    """(parameters of the largest decoder layer, parameters of all layers), from one meta layer per plan."""
    import torch

    from ..models.decoder import DecoderLayer

    largest, total = 0, 0
    with torch.device("meta"):
        for plan, count in Counter(cfg.layer_plan).items():
            n = sum(p.numel() for p in DecoderLayer(cfg, plan).parameters())
            largest, total = max(largest, n), total + count * n
    return largest, total


def sharded_step_memory(
    cfg: Config, *, batch: int, seq_len: int, params: int, world_size: int, precision: str = "fp32",
    checkpointing: bool = False, trainable: int | None = None, adapter_params: int = 0, **local_kwargs,
) -> TrainingStepMemory:  # fmt: skip
    """The per-process peak (module docstring); ``batch`` is the global batch (a multiple of ``world_size``)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size: must be a positive integer, got {world_size!r}")
    if batch % world_size:
        raise ValueError(f"batch: {batch} does not split over world_size {world_size} processes")
    local_batch = batch // world_size
    local = training_step_memory(
        cfg, batch=local_batch, seq_len=seq_len, params=params, precision=precision, checkpointing=checkpointing,
        trainable=trainable, float32_head=precision != "bf16", **local_kwargs,
    )  # fmt: skip
    n = world_size
    gathered_b = 2 if precision in ("bf16", "bf16-pure") else 4
    d, vocab = cfg.model.d_model, cfg.model.vocab_size
    largest_layer, layers_total = unit_params(cfg)
    largest_layer += adapter_params // max(1, cfg.model.n_layers)  # LoRA's A and B sit in the layers' units
    root = params - adapter_params - layers_total
    tokens = local_batch * seq_len
    activations = local.activations
    if precision == "bf16":  # FSDP2 gathers bf16 parameters: no autocast copies of float32 weights
        activations -= 2 * (vocab * d if checkpointing else params - (0 if cfg.model.tie_embeddings else vocab * d))
    outside = tokens * (outside_bytes(cfg, precision) + (4 * d if local.workspace else 4 * vocab))  # fused loss: dL/dh
    full_training = trainable is None or trainable == params
    head_gradient = vocab * d * gathered_b if full_training else 0.0
    state = (local.weights + local.optimizer_state) / n
    gradients = local.gradients / n
    gather = root * gathered_b + 3 * largest_layer * gathered_b
    candidates = {
        "backward": state + activations + local.logit_gradients + root * gathered_b + local.workspace,
        "layer backward": state + activations - outside + head_gradient + gather + local.workspace,
        "optimizer step": state + gradients + local.workspace,
    }
    if full_training:  # the root's gathered weights and whole gradients, its float32 copy-in, the layers' shards
        layer_gradients = layers_total * (local.gradients / local.trainable_params) / n
        candidates["root reduce-scatter"] = state + layer_gradients + 2 * root * gathered_b + 4 * root + local.workspace
    if checkpointing:
        biggest = max(layer_bytes_per_token(cfg, precision, plan.mlp == "moe") for plan in cfg.layer_plan)
        candidates["recompute"] = state + gradients + tokens * biggest + gather + local.workspace
    peak_at = max(candidates, key=candidates.get)
    return TrainingStepMemory(
        precision=precision, checkpointing=checkpointing, trainable_params=local.trainable_params,
        weights=local.weights / n, optimizer_state=local.optimizer_state / n, gradients=gradients,
        activations=activations, logit_gradients=local.logit_gradients, optimizer_temporaries=local.optimizer_temporaries,
        workspace=local.workspace,
        peak=candidates[peak_at], peak_at=peak_at, world_size=n, gathered=gather,
    )  # fmt: skip
