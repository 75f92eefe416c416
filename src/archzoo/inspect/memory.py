"""Memory of a config for inference and training, from its exact parameter count.

Weights: parameters x bytes per value (fp32 4, fp16/bf16 2, fp8 1). int8
and int4 are what ``archzoo.quantize(model, mode, group_size)`` stores, tensor
by tensor, counted on a ``meta`` model quantized the same way: integer weights
(int4 two per byte), their scales (and int4's minimums) in bf16, and the parts
left float in bf16 (embedding, norms, biases, router, the output head, which
``quantize`` skips by default). Buffers and the MTP module are not counted.
Weight-only quantization keeps activations and the KV cache in bf16, so
``dtype="int8" | "int4"`` sizes the cache at bf16.

KV cache, values per token per layer: what the attention block says it
stores (``kv_values_per_token``; ``blocks/attention.py``: K and V, 2 x
n_kv_heads x head_dim with head_dim as configured; ``blocks/mla.py``: the
latent and the shared RoPE key absorbed, DeepSeek-V2 Sec. 2.1, or the
decompressed K and V naive, as Hugging Face caches them).

kv_bytes_per_token = n_layers x values x bytes(dtype); the cache for a batch
is batch x seq_len x kv_bytes_per_token. Inference total = weights at dtype +
that cache (the transient working set of one layer and the last logits is
left out; at decode time it is small).

Training with AdamW in mixed precision (Rajbhandari et al. 2020, "ZeRO",
Sec. 3.1): 16 bytes per parameter = 2 (16-bit weights) + 2 (16-bit
gradients) + 4 (fp32 master weights) + 4 + 4 (fp32 first and second
moments). Every parameter counts, also experts a token does not use: each
has its gradient and optimizer state. Activations are 16-bit and estimated
in ``activations.py`` (Korthikanti et al. 2022), with and without full
activation checkpointing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial

from ..config import Config, load_config
from ..models.builders import attention_on_meta
from .activations import activation_bytes
from .flops import FlopsReport, estimate_flops
from .params import ParamReport, count_params
from .train_step import TrainingStepMemory, training_step_memory

BYTES_PER_VALUE = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
"""Storage of one value per dtype name."""

WEIGHT_DTYPES = ("fp32", "bf16", "fp8", "int8", "int4")
"""The dtypes whose weight bytes every report lists."""

ADAMW_MIXED_PRECISION = {"weights_16bit": 2, "gradients_16bit": 2, "master_fp32": 4, "adam_m_fp32": 4, "adam_v_fp32": 4}
"""Bytes per parameter of mixed-precision AdamW training (ZeRO, Sec. 3.1): 16 in all."""

_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16", "float8": "fp8"}


@dataclass(frozen=True)
class MemoryReport:
    """Bytes of one config at one batch, length and dtype (see the module docstring)."""

    name: str
    dtype: str
    batch: int
    seq_len: int
    params: int
    active_params: int
    weight_bytes: dict[str, float]
    kv_values_per_token_per_layer: int
    kv_bytes_per_token: float
    kv_cache_bytes: float
    inference_bytes: float
    training_state_bytes: dict[str, float]
    activation_bytes: float
    activation_bytes_checkpointed: float
    training_bytes: float
    training_bytes_checkpointed: float
    flops: FlopsReport
    training_step: TrainingStepMemory  # archzoo.train's own step at the chosen precision / checkpointing

    def to_dict(self) -> dict:
        return asdict(self)


def dtype_bytes(dtype: str) -> float:
    """Bytes of one value of ``dtype`` (``bf16``, ``float16``, ``int4``, ...); ValueError names the choices."""
    key = _DTYPE_ALIASES.get(str(dtype).lower().removeprefix("torch."), str(dtype).lower())
    if key not in BYTES_PER_VALUE:
        raise ValueError(f"dtype: {dtype!r} is not one of {', '.join(BYTES_PER_VALUE)}")
    return BYTES_PER_VALUE[key]


QUANTIZED_DTYPES = ("int8", "int4")
"""Weight-only modes of ``archzoo.quantize``: their weight figure is the quantized model's, their cache bf16."""


def quantized_weight_bytes(cfg: Config, params: int, group_size: int | None = 128, symmetric: bool = False) -> dict[str, int]:
    """Mode -> bytes ``archzoo.quantize(model, mode, group_size, symmetric=)`` leaves in a bf16 model of ``cfg``
    (a float16 one, as ChatGLM-6B's INT4 / INT8 checkpoints are, has the same bytes).

    Worked out from the block's own layout (``QuantizedWeight.buffer_shapes``) on one ``meta``
    layer per distinct layer plan, times how many layers share it; everything outside the
    layers (embedding, final norm, the head ``quantize`` skips) stays bf16: ``params`` (the
    model's total) minus the layers' parameters, at 2 bytes.
    """
    from collections import Counter

    import torch

    from ..models.decoder import DecoderLayer
    from ..models.quantize import planned_weight_bytes

    totals = dict.fromkeys(QUANTIZED_DTYPES, 0)
    layer_params = 0
    with torch.device("meta"):
        for plan, count in Counter(cfg.layer_plan).items():
            layer = DecoderLayer(cfg, plan).to(torch.bfloat16)
            layer_params += count * sum(p.numel() for p in layer.parameters())
            for mode in QUANTIZED_DTYPES:
                totals[mode] += count * planned_weight_bytes(layer, mode, group_size, skip=(), symmetric=symmetric)
    return {mode: total + 2 * (params - layer_params) for mode, total in totals.items()}


def kv_values_per_token_per_layer(cfg: Config) -> int:
    """Cached values of one token in one layer: the attention block's own ``kv_values_per_token``."""
    return attention_on_meta(cfg).kv_values_per_token()


def kv_bytes_per_token(cfg: Config, dtype: str = "bf16") -> float:
    """KV cache of one token over all layers at ``dtype``."""
    return cfg.model.n_layers * kv_values_per_token_per_layer(cfg) * dtype_bytes(dtype)


def estimate_memory(
    cfg: Config | str,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    dtype: str = "bf16",
    params: ParamReport | None = None,
    precision: str = "fp32",
    checkpointing: bool = False,
    lora_rank: int | None = None,
    lora_targets: Sequence[str] = ("q_proj", "v_proj"),
    prefix_length: int | None = None,
    prefix_projection: bool | int = False,
    group_size: int | None = 128,
    symmetric: bool = False,
    world_size: int = 1,
) -> MemoryReport:
    """Weights, KV cache, inference and training bytes and FLOPs per token of a config.

    batch: sequences at once (> 0). seq_len: tokens per sequence (> 0; unset =
    the config's max_seq_len). dtype: weights and KV cache for inference.
    The ``training_*`` fields are the textbook mixed-precision figures (ZeRO, Korthikanti)
    whatever ``dtype`` says; ``training_step`` is the peak of one step of ``archzoo.train``
    at ``precision`` ("fp32", "bf16" autocast, "bf16-pure") with or without activation
    ``checkpointing`` (``train_step.py``). ``lora_rank`` (with ``lora_targets``) and
    ``prefix_length`` (with ``prefix_projection``) make it the step that trains only those
    adapters on a frozen base, as ``archzoo train --lora / --prefix`` runs it (``adapter_memory.py``).
    ``group_size`` (None: one group per row) and ``symmetric`` are ``quantize``'s int4 recipe for the
    int4 figure (ChatGLM-6B's INT4 checkpoints: ``group_size=None, symmetric=True``).
    ``world_size`` > 1 makes ``training_step`` the per-process peak of fully sharded training on that
    many processes (FSDP2, ``archzoo train --nproc``; ``batch`` is the global batch, a multiple of it):
    parameters, gradients and optimizer state divided by N, plus what is gathered for the layer being
    computed and the activations of B/N sequences (``sharded_step.py``).
    """
    if not isinstance(cfg, Config):
        cfg = load_config(cfg)
    seq_len = cfg.model.max_seq_len if seq_len is None else seq_len
    for arg, value in (("batch", batch), ("seq_len", seq_len)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{arg}: must be a positive integer, got {value!r}")
    value_bytes = dtype_bytes(dtype)
    report = params or count_params(cfg)
    n = report.total
    weights = {name: n * BYTES_PER_VALUE[name] for name in WEIGHT_DTYPES if name not in QUANTIZED_DTYPES}
    weights.update(quantized_weight_bytes(cfg, n, group_size, symmetric))
    key = _DTYPE_ALIASES.get(str(dtype).lower().removeprefix("torch."), str(dtype).lower())
    kv_dtype = "bf16" if key in QUANTIZED_DTYPES else dtype
    per_token = kv_bytes_per_token(cfg, kv_dtype)
    cache = batch * seq_len * per_token
    state = {part: n * b for part, b in ADAMW_MIXED_PRECISION.items()}
    acts = activation_bytes(cfg, batch, seq_len)
    acts_ckpt = activation_bytes(cfg, batch, seq_len, checkpointing=True)
    return MemoryReport(
        name=cfg.name,
        dtype=dtype,
        batch=batch,
        seq_len=seq_len,
        params=n,
        active_params=report.active,
        weight_bytes=weights,
        kv_values_per_token_per_layer=kv_values_per_token_per_layer(cfg),
        kv_bytes_per_token=per_token,
        kv_cache_bytes=cache,
        inference_bytes=(weights[key] if key in QUANTIZED_DTYPES else n * value_bytes) + cache,
        training_state_bytes=state,
        activation_bytes=acts,
        activation_bytes_checkpointed=acts_ckpt,
        training_bytes=sum(state.values()) + acts,
        training_bytes_checkpointed=sum(state.values()) + acts_ckpt,
        flops=estimate_flops(cfg, report, seq_len),
        training_step=_training_step(
            cfg, batch, seq_len, n, precision, checkpointing, lora_rank, lora_targets, prefix_length, prefix_projection,
            world_size,
        ),
    )


def _training_step(
    cfg, batch, seq_len, n, precision, checkpointing, lora_rank, lora_targets, prefix_length, prefix_projection, world_size=1
):
    """``training_step_memory`` of full training, or of adapters on a frozen base; per process on ``world_size``."""
    if world_size != 1:
        if prefix_length is not None:
            raise ValueError("prefix_length: a P-tuning v2 prefix is not sharded (archzoo train --prefix runs on one process)")
        from .sharded_step import sharded_step_memory

        step, local_batch = partial(sharded_step_memory, world_size=world_size), batch // max(1, world_size)
    else:
        step, local_batch = training_step_memory, batch
    if lora_rank is None and prefix_length is None:
        return step(cfg, batch=batch, seq_len=seq_len, params=n, precision=precision, checkpointing=checkpointing)
    from .adapter_memory import adapter_cost

    cost = adapter_cost(
        cfg, batch=local_batch, precision=precision, lora_rank=lora_rank, lora_targets=lora_targets,
        prefix_length=prefix_length, prefix_projection=prefix_projection,
    )  # fmt: skip
    sharded = {"adapter_params": cost.adapter_params} if world_size != 1 else {}
    return step(
        cfg, batch=batch, seq_len=seq_len, params=n + cost.adapter_params, precision=precision,
        checkpointing=checkpointing, trainable=cost.adapter_params, largest_trainable=cost.largest_adapter,
        extra_activation_bytes=cost.extra_bytes, layer_activation_bytes=cost.layer_bytes,
        outside_activation_bytes=cost.outside_bytes, recompute_working_bytes=cost.recompute_bytes, **sharded,
    )  # fmt: skip
