"""Peak RSS of loading and decoding a quantized small model, beside estimate_memory's figure.

    python benchmarks/quant_memory.py            # the small config of bench_quant.py (d_model 512, 8 layers, vocab 32k)
    python benchmarks/quant_memory.py --quick    # 2 layers: checks the script runs

Each variant (bf16, int8, int4 g128: ``archzoo.quantize`` of the same random bf16
weights, saved with ``save_pretrained``) is measured in a fresh process: the resident
set after ``import torch, archzoo`` and a warm-up decode of llama-tiny quantized the same
way (torch's one-time costs: kernel libraries paged in, thread pools) is the baseline, then the folder is loaded and
``generate`` decodes 64 tokens from a 16-token prompt with bf16 activations (the
packed kernels' case); the figures are the resident set and its peak (VmHWM) minus the
baseline, for the load (reading the file and adopting its tensors) and, after the
peak is reset (``/proc/self/clear_refs``), for the decode. Beside it: ``estimate_memory``'s inference bytes (weights as the block
stores them + the bf16 KV cache for 80 tokens) and the bytes of the loaded model's
tensors (``stored_weight_bytes``). What the estimate leaves out is what separates
them: above all ``fast/linear.py``'s column-major copy of every float linear weight,
made on the first decode step and kept (for the quantized models that is the float
output head, 32000 x 512 bf16 = 32.8 MB; for bf16 every projection too); on the int4
kernel path the codes repacked into the kernel's tiled layout beside the block's own
nibbles (held twice: ``fast/quant.py``); and the transient working set of a forward
(one dequantized matrix on the dequantize path, the logits) and torch's allocator.
A loaded int8 model also keeps its codes' pages of the file resident beside the aligned
copy ``load_pretrained`` makes of them for the kernel (``fast/quant.py``'s ``align_codes``:
the file's tensors share one mapping, which the float embedding and head keep alive).

Measured (loaded 2-core AMD EPYC Zen 5, torch 2.13, MB = 10^6 bytes):

    weights     estimate  (weights)   stored  RSS loaded  peak load  peak decode  decode - est
    bf16           121.4      120.1    120.1       121.2      121.2        214.1         +92.7
    int8            94.2       92.9     92.9       118.0      118.0        153.4         +59.2
    int4 g128       81.3       80.0     80.0        76.5       76.5        133.3         +51.9

The stored bytes equal the estimate's weights exactly; decode adds the column-major copies
(bf16: all linears, ~87 MB; int8 / int4: the float head, 32.8 MB) and int4's repacked codes
(~14 MB); int8's loaded figure holds its codes twice (file pages + aligned copy, ~27 MB).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROMPT, NEW = 16, 64


def rss_kib(field: str) -> int:
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(folder: str, mode: str) -> None:
    import gc

    import torch

    import archzoo
    from archzoo.models.quantize import stored_weight_bytes

    torch.set_num_threads(2)
    # warm-up on llama-tiny the same way: torch's one-time costs (kernel libraries paged in, thread
    # pools, the kernels' probes) land in the baseline, not in the model's figures
    warm = archzoo.build_model("llama-tiny", dtype=torch.bfloat16).eval()
    if mode != "bf16":
        archzoo.quantize(warm, mode, 128)
    with torch.inference_mode():
        archzoo.generate(warm, torch.zeros(1, PROMPT, dtype=torch.long), max_new_tokens=4)
    del warm
    gc.collect()
    base = rss_kib("VmRSS")
    model = archzoo.load_pretrained(folder).eval()
    loaded, load_peak = rss_kib("VmRSS"), rss_kib("VmHWM")
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak (VmHWM) to the current RSS
        f.write("5")
    prompt = torch.randint(0, model.config.model.vocab_size, (1, PROMPT), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        archzoo.generate(model, prompt, max_new_tokens=NEW)
    print(json.dumps({"baseline": base * 1024, "after_load": (loaded - base) * 1024, "load_peak": (load_peak - base) * 1024,
                      "peak": (rss_kib("VmHWM") - base) * 1024, "stored": stored_weight_bytes(model)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 layers: checks the script runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)

    import torch

    import archzoo
    from bench_quant import small_config

    cfg = small_config(args.quick)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, mode in (("bf16", None), ("int8", "int8"), ("int4 g128", "int4")):
            torch.manual_seed(0)  # the same weights each time
            model = archzoo.build_model(cfg).to(torch.bfloat16)
            if mode:
                archzoo.quantize(model, mode, 128)
            folder = archzoo.save_pretrained(model, Path(tmp) / label.replace(" ", "-"))
            del model
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), mode or "bf16"], check=True,
                                 capture_output=True, text=True).stdout
            measured = json.loads(out.strip().splitlines()[-1])
            memory = archzoo.estimate_memory(cfg, dtype=mode or "bf16", seq_len=PROMPT + NEW, group_size=128)
            rows.append((label, memory.inference_bytes, memory.weight_bytes[mode or "bf16"], measured))
    mb = 1e6
    print(f"\n{cfg.name}: load + decode {NEW} tokens (bf16 activations), fresh process each; MB = 10^6 bytes")
    print(f"{'weights':10} {'estimate':>9} {'(weights)':>10} {'stored':>8} {'RSS loaded':>11} {'peak load':>10} "
          f"{'peak decode':>12} {'decode - est':>13}")
    for label, estimate, weights, m in rows:
        print(f"{label:10} {estimate / mb:9.1f} {weights / mb:10.1f} {m['stored'] / mb:8.1f} {m['after_load'] / mb:11.1f} "
              f"{m['load_peak'] / mb:10.1f} {m['peak'] / mb:12.1f} {(m['peak'] - estimate) / mb:+13.1f}")
    print(f"baseline (python, torch, archzoo, a warm-up decode of llama-tiny): {rows[0][3]['baseline'] / mb:.0f} MB, "
          "not included above")


if __name__ == "__main__":
    main()
