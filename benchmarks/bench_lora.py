"""A LoRA training step: archzoo against peft on transformers, on the same weights, side by side.

    python benchmarks/bench_lora.py [--repeats 10] [--threads N] [--rank 8]

The small LLaMA config (d_model 512, 8 layers, 8 heads, vocab 32k, SwiGLU 1376)
gets LoRA on q_proj and v_proj (rank 8, alpha 16) in archzoo; the same adapter
(B set non-zero) is saved and loaded into ``peft`` on the transformers model
holding the same weights, trainable. One step = forward, next-token
cross-entropy, backward, AdamW on the adapters; batch 4 x 128, float32. Each library
computes its loss the way it offers: peft / transformers' ``labels=`` (its
``ForCausalLMLoss``: whole logits, then ``F.cross_entropy``) and archzoo's
``model(ids, targets=...)``, which ``archzoo.train`` runs (its fast form never forms
the logits: ``fast/next_token_loss.py``). The two
steps alternate call by call (median of repeats), so a drifting shared machine
slows both alike. archzoo runs twice: ``implementation="reference"`` (every block
as its equation; LoRA as ``blocks/lora.py``, five autograd nodes) and ``"fast"``
(the speed forms of ``fast/``; LoRA as ``fast/lora.py``, one node with the
backward written out). Prints the times and the ratios
peft / archzoo (> 1: archzoo is faster); before timing, all compute the same
loss (checked to 1e-4).

Target (issue 15): ratio >= 1.3.
"""

from __future__ import annotations

import argparse
import copy
import tempfile

import peft
import torch
import transformers

import archzoo
from archzoo.fast import use_implementation
from common import cpu_name, interleaved_medians, same_weights

SMALL = dict(
    vocab_size=32000, hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8, intermediate_size=1376
)


def archzoo_step(model, optimizer, ids):
    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(ids[:, :-1], targets=ids[:, 1:])
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def peft_step(model, optimizer, ids):
    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        targets = ids[:, 1:].contiguous()  # shift_labels: already shifted, the same positions as archzoo's
        loss = model(input_ids=ids[:, :-1], labels=targets, shift_labels=targets).loss
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def lora_pair(rank: int = 8, batch: int = 4, seq: int = 128):
    """(archzoo reference, archzoo fast, peft on transformers, ids [batch, seq + 1]): the small LLaMA's
    weights in each, LoRA on q_proj and v_proj (alpha 2 rank, B non-zero), the same adapter in all three."""
    hf_model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL))
    model = same_weights(hf_model).train()
    archzoo.add_lora(model, rank=rank, alpha=2 * rank, targets=("q_proj", "v_proj"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.02)
    with tempfile.TemporaryDirectory() as folder:
        archzoo.save_adapter(model, f"{folder}/adapter")
        peft_model = peft.PeftModel.from_pretrained(hf_model, f"{folder}/adapter", is_trainable=True).train()
    fast = use_implementation(copy.deepcopy(model), "fast")
    use_implementation(model, "reference")  # every block, LoRA included, as its equation
    ids = torch.randint(0, SMALL["vocab_size"], (batch, seq + 1), generator=torch.Generator().manual_seed(1))
    return model, fast, peft_model, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=128)
    args = parser.parse_args()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, fast, peft_model, ids = lora_pair(args.rank, args.batch, args.seq)
    ours = [p for p in model.parameters() if p.requires_grad]
    ours_fast = [p for p in fast.parameters() if p.requires_grad]
    theirs = [p for p in peft_model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in ours) == sum(p.numel() for p in theirs)
    steps = {
        "peft": peft_step(peft_model, torch.optim.AdamW(theirs, lr=1e-4), ids),
        "archzoo": archzoo_step(model, torch.optim.AdamW(ours, lr=1e-4), ids),
        "archzoo fast": archzoo_step(fast, torch.optim.AdamW(ours_fast, lr=1e-4), ids),
    }
    first = {name: step() for name, step in steps.items()}
    if max(first.values()) - min(first.values()) > 1e-4:
        raise SystemExit(f"the models disagree before timing: loss {first}")
    times = interleaved_medians(steps, repeats=args.repeats, warmup=1)
    print(f"CPU: {cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, peft {peft.__version__}")
    print(f"LoRA step (q_proj, v_proj, rank {args.rank}) of the small LLaMA, batch {args.batch} x {args.seq}, float32:")
    print(f"  {sum(p.numel() for p in ours):,} trainable of {sum(p.numel() for p in model.parameters()):,} parameters")
    print(f"  peft on transformers  {times['peft'] * 1e3:8.1f} ms")
    for name in ("archzoo", "archzoo fast"):
        label = "reference" if name == "archzoo" else "fast"
        print(f"  archzoo ({label:9s})   {times[name] * 1e3:8.1f} ms   ratio peft / archzoo {times['peft'] / times[name]:5.2f}")
    print("  target: ratio >= 1.3 (issue 15)")


if __name__ == "__main__":
    main()
