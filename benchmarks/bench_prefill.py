"""Prefill speed: archzoo and transformers on the same weights, side by side.

    python benchmarks/bench_prefill.py [--repeats 10] [--threads N]

For each case a transformers model with random weights is saved and loaded
into archzoo, then one forward over a batch is timed in each, the two alternating call by
call so that a drifting machine slows both alike (median of repeats,
inference mode, float32). archzoo runs twice: ``implementation="reference"``
(``blocks/`` only) and ``"fast"`` (the default, ``fast/``). Prints the times,
the ratios transformers / archzoo (> 1 means archzoo is faster) and the
fraction of this machine's measured float32 matmul peak each reaches.

Targets (issue 2): small configs (d_model 512, 8 layers, vocab 32k, batch 4 x 256)
ratio >= 1.0; tiny configs (per-call overhead dominates) ratio >= 1.5.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import transformers

from common import forward_flops, interleaved_medians, matmul_peak_flops, same_weights

SMALL = dict(vocab_size=32000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8)


def cases():
    yield "llama small 512x8, 4x256", (4, 256), transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SMALL, intermediate_size=1376, num_key_value_heads=8)
    )
    yield "bloom small 512x8, 4x256", (4, 256), transformers.BloomForCausalLM(
        transformers.BloomConfig(vocab_size=32000, hidden_size=512, n_layer=8, n_head=8)
    )
    tiny = dict(vocab_size=512, hidden_size=128, num_hidden_layers=2, num_attention_heads=4)
    yield "llama tiny 128x2, 1x16", (1, 16), transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**tiny, intermediate_size=352, num_key_value_heads=2)
    )
    yield "bloom tiny 96x2, 1x16", (1, 16), transformers.BloomForCausalLM(
        transformers.BloomConfig(vocab_size=512, hidden_size=96, n_layer=2, n_head=6)
    )
    yield "qwen3 tiny 128x2, 1x16", (1, 16), transformers.Qwen3ForCausalLM(
        transformers.Qwen3Config(**tiny, intermediate_size=352, num_key_value_heads=2, head_dim=48)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    peak = matmul_peak_flops()
    print(f"threads {torch.get_num_threads()}, measured float32 matmul peak {peak / 1e9:.1f} GFLOP/s\n")
    header = (
        f"{'case':28s} {'transformers':>13s} {'reference':>10s} {'fast':>10s} {'hf/ref':>7s} {'hf/fast':>7s}"
        f" {'hf %peak':>9s} {'ref %peak':>9s} {'fast %peak':>10s}"
    )
    print(header)
    print("-" * len(header))
    for name, (batch, seq), hf_model in cases():
        hf_model.eval()
        model, reference = same_weights(hf_model), same_weights(hf_model, "reference")
        ids = torch.randint(0, hf_model.config.vocab_size, (batch, seq))
        with torch.inference_mode():
            hf_out = hf_model(input_ids=ids).logits
            for ours in (model, reference):
                assert (hf_out - ours(ids)).abs().max() < 1e-4, "the models disagree: not the same weights"
            fns = {"transformers": partial(hf_model, input_ids=ids), "reference": partial(reference, ids)}
            fns["fast"] = partial(model, ids)
            times = interleaved_medians(fns, args.repeats)
        t_hf, t_ref, t_fast = times["transformers"], times["reference"], times["fast"]
        flops = forward_flops(model, batch, seq)
        print(
            f"{name:28s} {t_hf * 1e3:10.2f} ms {t_ref * 1e3:7.2f} ms {t_fast * 1e3:7.2f} ms"
            f" {t_hf / t_ref:7.2f} {t_hf / t_fast:7.2f}"
            f" {flops / t_hf / peak:9.1%} {flops / t_ref / peak:9.1%} {flops / t_fast / peak:10.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
