"""What each fast form gains: the fast path against the fast path without that one form.

    python benchmarks/bench_fast_forms.py [--repeats 5] [--threads 1]

For each speed form of ``archzoo/fast/`` (``FAST_FORMS``),
the cases of ``bench_decode.py``, ``bench_prefill.py`` and ``bench_moe.py``
where it can matter are timed twice, in the same interleaved rounds: every
block on its fast form, and the same model with only that block put back on
its reference form. gain = time without / time with - 1; the issue's rule is
that a form stays only if it gains at least 5% somewhere. The files in
``fast/`` quote these figures.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import torch
import transformers

import archzoo
from archzoo.blocks.attention import Attention
from archzoo.blocks.experts import StackedExperts
from archzoo.blocks.mla import MultiHeadLatentAttention
from archzoo.blocks.moe import MoE
from archzoo.blocks.next_token_loss import NextTokenLoss
from archzoo.blocks.norm import RMSNorm
from archzoo.blocks.rope import RotaryEmbedding
from archzoo.blocks.router import Router
from archzoo.fast import reference_class, use_implementation
from common import interleaved_medians


def without(model: torch.nn.Module, form: type) -> torch.nn.Module:
    """A copy of the fast ``model`` with only the blocks of reference class ``form`` on their reference form."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        reference = reference_class(module)
        if reference is form:
            module.__class__ = reference
    return twin


def decode(model, new: int = 16):
    ids = torch.randint(1, 200, (1, 16), generator=torch.Generator().manual_seed(0))
    return lambda: archzoo.generate(model, ids, new)


def prefill(model, batch: int, seq: int):
    ids = torch.randint(1, 200, (batch, seq), generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            model(ids)

    return run


def moe_layer():
    layer = MoE(512, n_experts=16, top_k=2, expert_hidden=256, normalize_top_k=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.05)
    return use_implementation(layer, "fast")


def moe_forward(layer, tokens: int):
    x = torch.randn(tokens, 512)

    def run():
        with torch.no_grad():
            layer(x)

    return run


def moe_forward_backward(layer, tokens: int):
    x = torch.randn(tokens, 512, requires_grad=True)

    def run():
        layer.zero_grad(set_to_none=True)
        layer(x).hidden.sum().backward()

    return run


def train_step(model, batch: int, seq: int, autocast: bool = False):
    """One fused-AdamW step on next-token cross-entropy, as ``archzoo.train`` runs it (``targets=``);
    ``autocast``: its ``--precision bf16`` (the forward and the loss under bfloat16 autocast)."""
    model = copy.deepcopy(model).train()  # its own weights and optimizer: the two sides never share a step
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    windows = torch.randint(0, model.config.model.vocab_size, (batch, seq + 1), generator=torch.Generator().manual_seed(0))

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(windows[:, :-1], targets=windows[:, 1:])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return run


def small_llama():
    config = transformers.LlamaConfig(
        vocab_size=32000, hidden_size=512, intermediate_size=1536, num_hidden_layers=8, num_attention_heads=8
    )
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        transformers.LlamaForCausalLM(config).save_pretrained(folder)
        return archzoo.load_pretrained(folder).eval()


def tiny(name: str, max_seq_len: int | None = None):
    data = archzoo.load_config(name).to_dict()
    if max_seq_len is not None:
        data["model"]["max_seq_len"] = max_seq_len
    torch.manual_seed(0)
    return archzoo.build_model(archzoo.Config.from_dict(data)).eval()


def cases():
    """(form, label, fast model or layer, how to time it)."""
    llama, deepseek, v2 = tiny("llama-tiny", 2048), tiny("deepseek-tiny"), tiny("deepseek-v2-tiny", 2048)
    small = small_llama()
    layer = moe_layer()
    yield RMSNorm, "llama-tiny decode", llama, decode
    yield RMSNorm, "deepseek-tiny decode", deepseek, decode
    yield RMSNorm, "small-llama prefill 4x256", small, lambda m: prefill(m, 4, 256)
    yield RotaryEmbedding, "llama-tiny decode", llama, decode
    yield RotaryEmbedding, "small-llama prefill 4x256", small, lambda m: prefill(m, 4, 256)
    yield MultiHeadLatentAttention, "deepseek-v2-tiny decode", v2, decode
    yield MultiHeadLatentAttention, "deepseek-v2-tiny prefill 1x256", v2, lambda m: prefill(m, 1, 256)
    yield MultiHeadLatentAttention, "deepseek-v2-tiny bf16 step 16x128", v2, lambda m: train_step(m, 16, 128, autocast=True)
    yield MultiHeadLatentAttention, "deepseek-v2-tiny step 1x2048", v2, lambda m: train_step(m, 1, 2048)
    yield torch.nn.Linear, "small-llama decode", small, decode
    yield torch.nn.Linear, "llama-tiny decode", llama, decode
    yield StackedExperts, "MoE layer decode 1 token", layer, lambda m: moe_forward(m, 1)
    yield StackedExperts, "MoE layer forward 1024", layer, lambda m: moe_forward(m, 1024)
    yield StackedExperts, "MoE layer fwd+bwd 1024", layer, lambda m: moe_forward_backward(m, 1024)
    yield Router, "MoE layer decode 1 token", layer, lambda m: moe_forward(m, 1)
    yield Router, "MoE layer forward 1024", layer, lambda m: moe_forward(m, 1024)
    yield NextTokenLoss, "small-llama train step 4x128", small, lambda m: train_step(m, 4, 128)
    yield NextTokenLoss, "small-llama train step 1x128", small, lambda m: train_step(m, 1, 128)
    yield NextTokenLoss, "small-llama bf16 train step 4x128", small, lambda m: train_step(m, 4, 128, autocast=True)
    yield Attention, "small-llama bf16 train step 4x128", small, lambda m: train_step(m, 4, 128, autocast=True)
    yield Attention, "llama-tiny bf16 train step 16x128", llama, lambda m: train_step(m, 16, 128, autocast=True)
    yield Attention, "small-llama fp32 train step 4x128", small, lambda m: train_step(m, 4, 128)
    # long sequences: SDPA's own causal mask lets its kernel skip the blocks above the diagonal
    yield Attention, "llama-tiny fp32 train step 1x2048", llama, lambda m: train_step(m, 1, 2048)
    yield Attention, "llama-tiny bf16 train step 1x2048", llama, lambda m: train_step(m, 1, 2048, autocast=True)
    yield Attention, "small-llama fp32 train step 1x1024", small, lambda m: train_step(m, 1, 1024)
    yield Attention, "small-llama prefill 1x2048", small, lambda m: prefill(m, 1, 2048)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", nargs="*", default=None, help="form names to time (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats}, interleaved")
    print(f"{'form':26s} {'case':32s} {'fast':>10s} {'without it':>11s} {'gain':>7s}")
    for form, label, model, timing in cases():
        name = form.__name__
        if args.only and name.replace(" ", "_") not in args.only:
            continue
        times = interleaved_medians({"with": timing(model), "without": timing(without(model, form))}, args.repeats, warmup=1)
        gain = times["without"] / times["with"] - 1
        print(
            f"{name:26s} {label:32s} {times['with'] * 1e3:8.3f}ms {times['without'] * 1e3:9.3f}ms {gain:+7.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
