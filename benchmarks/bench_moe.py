"""One MoE layer, archzoo against transformers on the same weights.

    python benchmarks/bench_moe.py            # full run (about a minute on 2 cores)
    python benchmarks/bench_moe.py --quick    # a few seconds: checks the script runs

The layer of the issue: d_model 512, 16 experts of width 256 (SwiGLU), top-2
softmax routing renormalised (Qwen3-MoE's block). transformers runs
``Qwen3MoeSparseMoeBlock`` with its grouped path (``experts_implementation =
"grouped_mm"``, its default; "eager" is its per-expert loop, shown for
reference); archzoo runs ``blocks.moe.MoE`` holding the same weights (checked
equal to 1e-5 first), on the reference path (``blocks/``) and on the fast one
(``fast/``, the default of ``build_model``). Cases, each timed as the best of ``--repeats`` runs
(interleaved, so both see the same machine load):

    forward 1024 tokens            no grad            target ratio >= 1.0 (matmul-bound)
    decode 1 token                 no grad            target ratio >= 1.5 (overhead-bound)
    forward + backward 1024 tokens grads of x and W   target ratio >= 1.2

ratio = transformers (grouped) time / archzoo time (> 1: archzoo is faster); targets are the fast path's.

A last line times the floor under forward + backward: the four expert matmuls
of one step alone (forward and both gradients of both grouped projections,
``torch._grouped_mm`` on the same routing), which any implementation that
computes in float32 must do. transformers time / that floor is the best ratio
any MoE layer could reach here, with all routing, gathers and activations free.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import transformers
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from archzoo.blocks.experts import Dispatch
from archzoo.blocks.moe import MoE
from archzoo.fast import use_implementation

D_MODEL, N_EXPERTS, TOP_K, EXPERT_HIDDEN = 512, 16, 2, 256


def transformers_block(implementation: str) -> Qwen3MoeSparseMoeBlock:
    config = transformers.Qwen3MoeConfig(
        hidden_size=D_MODEL,
        moe_intermediate_size=EXPERT_HIDDEN,
        num_experts=N_EXPERTS,
        num_experts_per_tok=TOP_K,
        norm_topk_prob=True,
    )
    config._experts_implementation = implementation
    torch.manual_seed(0)
    block = Qwen3MoeSparseMoeBlock(config)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0.0, 0.05)
    return block


def archzoo_layer_like(block: Qwen3MoeSparseMoeBlock, implementation: str) -> MoE:
    """archzoo's MoE holding the block's weights (both keep gate and up fused as [E, 2h, d])."""
    moe = MoE(D_MODEL, n_experts=N_EXPERTS, top_k=TOP_K, expert_hidden=EXPERT_HIDDEN, normalize_top_k=True)
    with torch.no_grad():
        moe.router.weight.copy_(block.gate.weight)
        moe.experts.gate_up_proj.copy_(block.experts.gate_up_proj)
        moe.experts.down_proj.copy_(block.experts.down_proj)
    return use_implementation(moe, implementation)


class OutputOnly(torch.nn.Module):
    """archzoo's MoE returns an ``MoEOutput`` (output and routing signals); the cases time the output."""

    def __init__(self, moe: MoE):
        super().__init__()
        self.moe = moe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.moe(x).hidden


def best_seconds(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Best wall time of each function, runs interleaved round-robin."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def forward(layer, x: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return layer(x)

    return run


def forward_backward(layer, x: torch.Tensor) -> Callable[[], object]:
    x = x.clone().requires_grad_()
    grad = torch.randn_like(x)

    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(grad)

    return run


def grouped_matmuls_only(layer: MoE, x: torch.Tensor) -> Callable[[], object]:
    """Forward + backward of the two grouped expert projections alone, on ``layer``'s routing of ``x``."""
    experts = layer.experts
    tokens = x.reshape(-1, x.shape[-1])
    with torch.no_grad():
        dispatch = Dispatch(layer.router(tokens).indices, experts.n_experts)
    offsets = dispatch.counts.cumsum(0).to(torch.int32)
    rows = tokens.index_select(0, dispatch.token).requires_grad_()
    hidden = torch.randn(rows.shape[0], experts.hidden, requires_grad=True)
    grad_up, grad_down = torch.randn(rows.shape[0], 2 * experts.hidden), torch.randn_like(rows)

    def run():
        experts.zero_grad(set_to_none=True)
        rows.grad = hidden.grad = None
        torch._grouped_mm(rows, experts.gate_up_proj.transpose(1, 2), offs=offsets).backward(grad_up)
        torch._grouped_mm(hidden, experts.down_proj.transpose(1, 2), offs=offsets).backward(grad_down)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats: checks the script runs")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (best is kept)")
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (3 if args.quick else 30)
    tokens = 128 if args.quick and args.tokens == 1024 else args.tokens

    grouped, eager = transformers_block("grouped_mm"), transformers_block("eager")
    ours = OutputOnly(archzoo_layer_like(grouped, "fast"))
    ref = OutputOnly(archzoo_layer_like(grouped, "reference"))
    for layer in (grouped, eager, ours, ref):
        layer.train()  # as in training; archzoo's aux loss is off (aux_loss_coef = 0), like transformers' block
    torch.manual_seed(1)
    x = torch.randn(1, tokens, D_MODEL)
    with torch.no_grad():
        reference = grouped(x)
        assert (ours(x) - reference).abs().max() < 1e-5, "archzoo and transformers disagree"
        assert (ref(x) - reference).abs().max() < 1e-5, "archzoo and transformers disagree"
        assert (eager(x) - reference).abs().max() < 1e-5
    token = x[:, :1]

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}")
    print(f"MoE layer: d_model {D_MODEL}, {N_EXPERTS} experts x {EXPERT_HIDDEN}, top-{TOP_K}; best of {repeats}")
    print(
        f"{'case':34} {'tf grouped':>11} {'tf eager':>10} {'reference':>10} {'fast':>10}"
        f" {'hf/ref':>7} {'hf/fast':>7} {'target':>7}"
    )
    cases = [
        (f"forward {tokens} tokens", forward, x, 1.0),
        ("decode 1 token", forward, token, 1.5),
        (f"forward + backward {tokens} tokens", forward_backward, x, 1.2),
    ]
    floor = grouped_matmuls_only(ours.moe, x) if hasattr(torch, "_grouped_mm") else None
    for label, make, inputs, target in cases:
        fns = {"grouped": make(grouped, inputs), "eager": make(eager, inputs)}
        fns.update(ref=make(ref, inputs), ours=make(ours, inputs))
        with_floor = make is forward_backward and floor is not None
        if with_floor:
            fns["floor"] = floor  # in the same interleaved rounds, so the machine's drift hits all alike
        times = best_seconds(fns, repeats)
        ratio = times["grouped"] / times["ours"]
        flag = "ok" if ratio >= target else "MISS"
        print(
            f"{label:34} {times['grouped'] * 1e3:9.3f}ms {times['eager'] * 1e3:8.3f}ms {times['ref'] * 1e3:8.3f}ms"
            f" {times['ours'] * 1e3:8.3f}ms {times['grouped'] / times['ref']:6.2f}x {ratio:6.2f}x {target:5.1f}x {flag}",
            flush=True,
        )
        if with_floor:
            print(
                f"{'  floor: its expert matmuls alone':34} {times['grouped'] * 1e3:9.3f}ms {'':21} "
                f"{times['floor'] * 1e3:8.3f}ms {'':7} {times['grouped'] / times['floor']:6.2f}x"
                "  (the best ratio reachable)"
            )


if __name__ == "__main__":
    main()
