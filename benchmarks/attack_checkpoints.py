"""Mutate saved tiny checkpoints one thing at a time and count how ``load_pretrained`` takes each.

    python benchmarks/attack_checkpoints.py [--configs llama-tiny,bloom-tiny,...] [--json]

Every shipped ``*-tiny`` config is saved by ``save_pretrained``; then, one mutant per folder copy:
every config.json field deleted, doubled, halved, negated, made a string, null, a float or NaN; every
tensor dropped, truncated by a row, transposed, cast to int32, given a NaN; an extra tensor; the
safetensors file truncated. Each mutant lands in one class:

    clear    an ArchzooError whose one-line message names the folder or a file in it
    unclear  any other exception, or a message that names neither (or spans lines)
    silent   it loads, its logits differ from the unmutated model's (by more than 1e-4), and either
             transformers builds another model from the same folder, or there is no transformers
             class to ask (remote-code layouts: Baichuan, ChatGLM-6B)
    new      it loads into another model, and transformers builds that same model from the folder
             (a doubled eps, top_k, a flipped flag: a valid config of another model)
    same     it loads and computes the same logits (a default restated, a field the family ignores)

``--json`` lists every mutant with its class. ("lost", an interrupted save, is the kill test's
business: tests/models/test_save_kill.py.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import archzoo
from archzoo.config import config_paths
from archzoo.errors import ArchzooError


def config_mutants(config: dict):
    for key, value in config.items():
        yield f"del {key}", lambda c, k=key: {x: v for x, v in c.items() if x != k}
        if isinstance(value, bool):
            yield f"{key} flipped", lambda c, k=key: {**c, k: not c[k]}
            yield f"{key} as string", lambda c, k=key: {**c, k: str(c[k]).lower()}
        elif isinstance(value, int):
            for name, f in (("x2", lambda v: 2 * v), ("/2", lambda v: v // 2), ("negative", lambda v: -v - 1),
                            ("float", lambda v: v + 0.5), ("string", str), ("null", lambda v: None)):
                yield f"{key} {name}", lambda c, k=key, f=f: {**c, k: f(c[k])}
        elif isinstance(value, float):
            for name, f in (("x2", lambda v: 2 * v), ("nan", lambda v: float("nan")), ("negative", lambda v: -v),
                            ("string", str)):
                yield f"{key} {name}", lambda c, k=key, f=f: {**c, k: f(c[k])}


def tensor_mutants(state: dict):
    for key, tensor in state.items():
        yield f"drop {key}", lambda s, k=key: {x: v for x, v in s.items() if x != k}
        if tensor.ndim >= 1 and tensor.shape[0] > 1:
            yield f"{key} one row short", lambda s, k=key: {**s, k: s[k][:-1].contiguous()}
        if tensor.ndim == 2 and tensor.shape[0] != tensor.shape[1]:
            yield f"{key} transposed", lambda s, k=key: {**s, k: s[k].T.contiguous()}
        yield f"{key} int32", lambda s, k=key: {**s, k: s[k].to(torch.int32)}
        yield f"{key} NaN", lambda s, k=key: {**s, k: torch.where(torch.arange(s[k].numel()).view(s[k].shape) == 0, float("nan"), s[k])}
    yield "extra tensor", lambda s: {**s, "model.extra.weight": torch.zeros(2)}


def classify(folder: Path, reference: torch.Tensor, ids: torch.Tensor) -> tuple[str, str]:
    try:
        model = archzoo.load_pretrained(folder)
    except ArchzooError as err:
        message = str(err)
        named = str(folder) in message and "\n" not in message
        return ("clear" if named else "unclear"), message
    except Exception as err:  # noqa: BLE001 - what we count
        return "unclear", f"{type(err).__name__}: {err}"
    try:
        with torch.no_grad():
            logits = model(ids)
    except Exception as err:  # noqa: BLE001 - it loaded, then failed in the forward: not clear at load time
        return "unclear", f"forward: {type(err).__name__}: {err}"
    if logits.shape == reference.shape and torch.allclose(logits, reference, atol=1e-4, rtol=0):
        return "same", ""
    return ("new" if transformers_agrees(folder, logits, ids) else "silent"), ""


def transformers_agrees(folder: Path, logits: torch.Tensor, ids: torch.Tensor) -> bool:
    """transformers' own class for the folder's architecture, if it has one, gives these logits."""
    import transformers

    architecture = json.loads((folder / "config.json").read_text()).get("architectures", [None])[0]
    if not hasattr(transformers, str(architecture)):
        return False
    try:
        hf = getattr(transformers, architecture).from_pretrained(folder).eval()
        with torch.no_grad():
            theirs = hf(ids).logits
    except Exception:  # noqa: BLE001 - transformers refuses the folder: archzoo accepting it is not agreement
        return False
    return theirs.shape == logits.shape and torch.allclose(theirs, logits, atol=1e-4, rtol=0)


def attack(name: str, root: Path) -> list[dict]:
    torch.manual_seed(0)
    model = archzoo.build_model(name).eval()
    saved = archzoo.save_pretrained(model, root / name)
    ids = torch.randint(0, model.config.model.vocab_size, (1, 6), generator=torch.Generator().manual_seed(0))
    reference = archzoo.load_pretrained(saved)(ids).detach()
    config = json.loads((saved / "config.json").read_text())
    state = load_file(saved / "model.safetensors")
    results = []
    work = root / "mutant"

    def run(label: str, write) -> None:
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(saved, work)
        write(work)
        kind, message = classify(work, reference, ids)
        results.append({"config": name, "mutant": label, "class": kind, "message": message[:200]})

    for label, change in config_mutants(config):
        run(label, lambda f, change=change: (f / "config.json").write_text(json.dumps(change(config))))
    for label, change in tensor_mutants(state):
        run(label, lambda f, change=change: save_file(change(dict(state)), f / "model.safetensors"))
    data = (saved / "model.safetensors").read_bytes()
    for label, cut in (("safetensors truncated to half", len(data) // 2), ("safetensors one byte short", len(data) - 1)):
        run(label, lambda f, cut=cut: (f / "model.safetensors").write_bytes(data[:cut]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", help="comma-separated config names (default: every *-tiny config)")
    parser.add_argument("--json", action="store_true", help="every mutant with its class and message")
    args = parser.parse_args()
    names = args.configs.split(",") if args.configs else sorted(n for n in config_paths() if n.endswith("-tiny"))
    torch.set_num_threads(1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results += attack(name, Path(tmp))
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        return
    counts = Counter(r["class"] for r in results)
    classes = ("clear", "unclear", "silent", "new", "same")
    print(f"{len(results)} checkpoint mutants of {len(names)} configs: " + ", ".join(f"{k} {counts[k]}" for k in classes))
    for r in results:
        if r["class"] in ("unclear", "silent"):
            print(f"  {r['class']:8} {r['config']}: {r['mutant']}: {r['message'][:150]}")
    for name in names:
        c = Counter(r["class"] for r in results if r["config"] == name)
        print(f"  {name:18} " + " ".join(f"{k} {c[k]:3}" for k in classes))


if __name__ == "__main__":
    main()
