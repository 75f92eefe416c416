"""Speed forms of blocks: the same numbers as ``blocks/``, faster on this project's CPUs.

``blocks/`` is the reference: each forward is its docstring's equation. Each
file here holds the fast form of one block, a subclass of it that overrides
only how the numbers are computed (no parameter, buffer or name changes), says
why it is equal, and is tested equal to it (``tests/fast/``).

``use_implementation(model, "fast")`` re-classes every block that has a fast
form in place (``module.__class__``), and ``"reference"`` restores the
reference classes; weights, ``state_dict`` and checkpoints are untouched.
``build_model(cfg, implementation=...)`` and ``load_pretrained(folder,
implementation=...)`` call it; ``"fast"`` is their default.

A form stays only if it gains at least 5% on a benchmark in ``benchmarks/``,
measured against the fast path without it, side by side in one run:
``python benchmarks/bench_fast_forms.py --threads 1 --repeats 15`` (AMD EPYC
Zen 5, 2 cores shared with other jobs, torch 2.13; gain = time without / time
with - 1, decode cases timed over ``generate``):

    RMSNorm            llama-tiny decode +28.5%, deepseek-tiny decode +19.0%
    RotaryEmbedding    llama-tiny decode +41.2%
    MLA (absorbed)     deepseek-v2-tiny decode +19.0%, prefill 1x256 +49.0%; bf16-autocast training step
                       16x128 +21.8% (SDPA in float32, as Attention's; 2-core Intel Xeon with AMX, 2 threads)
    StackedExperts     MoE layer decode 1 token +60.2%, forward + backward 1024 tokens +87.0%
    Router             MoE layer decode 1 token +17.4%
    Linear             small-llama decode +13.5% (16-token generate, prefill included; per decode
                       step, fastest of 160: +43%); llama-tiny decode +2.9% (its weights fit in cache)
    LoRALinear         see ``benchmarks/bench_lora.py``
    NextTokenLoss      small-llama training step 4x128 (AdamW, vocab 32k) +26.3% / +20.9%, 1x128
                       +1.8% / +6.5% (two runs; 2 threads, median of 12, quiet machine); under bf16
                       autocast +14.8% (small-llama 4x128; 2-core Intel Xeon with AMX)
    Attention          bf16-autocast training step (SDPA in float32): small-llama 4x128 +6.4% / +3.0%,
                       llama-tiny 16x128 +69.7% / +63.1% (two runs; 2-core Intel Xeon with AMX, 2 threads,
                       median of 12); SDPA's own causal mask (``is_causal``) on long sequences: llama-tiny
                       fp32 training step 1x2048 +45.3%, small-llama prefill 1x2048 +19.9% (same CPU; dropped
                       once when measured at 32-256 positions only, where it gains under 5%)

Measured and dropped (under 5%): ALiBi's cached decoding ramp (bloom-tiny decode -1.1%); RMSNorm's
backward written out as one autograd node (training step with AdamW, fastest of 60 / 60 / 12:
llama-tiny 1x32 -3.7%, qwen3-tiny 1x32 +0.1%, llama-tiny 16x128 -1.9%); the embedding's gradient
as zeros + one ``index_add_`` in place of torch's ``embedding_dense_backward`` (2x faster alone, but a training
step with AdamW, 2 threads, median of 12: small-llama 4x128 -3.0%, llama-tiny 16x128 -3.8%).
"""

from __future__ import annotations

from torch import nn

from ..blocks.attention import Attention
from ..blocks.experts import StackedExperts
from ..blocks.lora import LoRALinear
from ..blocks.mla import MultiHeadLatentAttention
from ..blocks.next_token_loss import NextTokenLoss
from ..blocks.norm import RMSNorm
from ..blocks.quant import QuantLinear
from ..blocks.rope import RotaryEmbedding
from ..blocks.router import Router
from ..errors import InputError
from .attention import FastAttention
from .experts import FastStackedExperts
from .linear import FastLinear, decoding_layout
from .lora import FastLoRALinear
from .mla import FastMultiHeadLatentAttention
from .next_token_loss import FastNextTokenLoss
from .norm import FastRMSNorm
from .quant import FastQuantLinear
from .rope import FastRotaryEmbedding
from .router import FastRouter

IMPLEMENTATIONS = ("reference", "fast")

FAST_FORMS: dict[type[nn.Module], type[nn.Module]] = {
    RMSNorm: FastRMSNorm,
    RotaryEmbedding: FastRotaryEmbedding,
    StackedExperts: FastStackedExperts,
    Router: FastRouter,
    LoRALinear: FastLoRALinear,
    MultiHeadLatentAttention: FastMultiHeadLatentAttention,
    QuantLinear: FastQuantLinear,
    NextTokenLoss: FastNextTokenLoss,
    Attention: FastAttention,
    nn.Linear: FastLinear,
}
"""reference block class -> its fast form (exact class match: a subclass is another block)."""

KEPT: dict[str, object] = {
    "column_major": lambda copy: copy.weight,  # FastLinear's decoding copy (a ColumnMajor)
    "chunk_buffer": lambda buffer: buffer,  # FastNextTokenLoss's [rows, V] buffer
    "chunk_buffer_low": lambda buffer: buffer,  # and its bfloat16 twin under autocast
}
"""What fast forms keep in a module's ``__dict__`` between calls -> the tensor it holds: dropped on
the switch to the reference, counted by ``kept_tensors`` (memory accounting)."""

def check_implementation(implementation: str) -> str:
    if implementation not in IMPLEMENTATIONS:
        raise InputError(
            f"implementation: must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, got {implementation!r}"
        )
    return implementation


def reference_class(module: nn.Module) -> type[nn.Module]:
    """The reference block class of ``module`` (its own class when it is not a fast form)."""
    return type(module).__dict__.get("reference", type(module))


def use_implementation(model: nn.Module, implementation: str) -> nn.Module:
    """Switch every block of ``model`` to its ``"fast"`` form or back to the ``"reference"`` one, in place."""
    check_implementation(implementation)
    for module in model.modules():
        reference = reference_class(module)
        if implementation == "reference":
            module.__class__ = reference
        elif reference in FAST_FORMS:
            module.__class__ = FAST_FORMS[reference]
    if implementation == "reference":
        for module in model.modules():
            for name in KEPT:
                module.__dict__.pop(name, None)
    model.implementation = implementation
    return model


def kept_tensors(model: nn.Module) -> list:
    """The tensors fast forms keep between calls outside parameters and buffers (``KEPT``)."""
    return [tensor(m.__dict__[name]) for m in model.modules() for name, tensor in KEPT.items() if name in m.__dict__]


__all__ = ["FAST_FORMS", "IMPLEMENTATIONS", "decoding_layout", "kept_tensors", "reference_class", "use_implementation"]
