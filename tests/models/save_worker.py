"""A process that saves a model of a few hundred MB over a checkpoint folder, on request, in forked
children that tests/models/test_save_kill.py kills with SIGKILL (fork: no torch import per save).

stdin ``save A`` / ``save B``: fork a child that saves that model into the folder; print its pid, then
``done <exit status> <seconds>`` once it ends. On start it saves each model once into its own folder
(``<folder>.A``, ``<folder>.B``: what the test compares against) and prints ``ready``."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import torch

import archzoo


def big_config(vocab_size: int) -> archzoo.config.Config:
    cfg = archzoo.load_config("llama-tiny")
    return cfg.replace(model=dataclasses.replace(cfg.model, vocab_size=vocab_size))


def main() -> None:
    folder, vocab_size = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(1)  # no OpenMP pool to inherit badly across fork
    torch.manual_seed(0)
    models = {"A": archzoo.build_model(big_config(vocab_size))}
    models["B"] = archzoo.build_model(big_config(vocab_size))
    for name, model in models.items():
        archzoo.save_pretrained(model, f"{folder}.{name}")
    print("ready", flush=True)
    for line in sys.stdin:
        which = line.split()[1]
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                archzoo.save_pretrained(models[which], folder)
                code = 0
            finally:
                os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"done {status} {time.perf_counter() - start:.3f}", flush=True)


if __name__ == "__main__":
    main()
