"""Measured peak memory of training: live tensor bytes, the quantity ``estimate_memory`` predicts.

``TensorMemory`` is a ``TorchDispatchMode``: every tensor an operation returns
(forward, backward and optimizer alike) has its storage counted once, until
the storage is freed (a ``weakref.finalize`` on it), and the running total's
maximum is the peak. Tensors that exist before (weights, gradients, AdamW
moments, buffers) are counted by ``track``.

Why this and not the process's resident memory (RSS): RSS adds what no config
estimate can know - torch's and Python's own code and heaps (~300 MB here),
oneDNN's scratch buffers, and memory glibc's allocator keeps after tensors are
freed (its high-water mark depends on allocation order, not on the model) - and
it cannot be reset per step on most systems. Live tensor bytes are exactly the
weights, gradients, optimizer state, activations and temporaries the estimate
adds up, so the two are comparable. ``rss_peak_bytes`` gives the OS's figure
beside it where Linux provides one.

Sharded training (FSDP2) counts each process's own bytes: a ``DTensor`` by its
local shard, and the whole parameters FSDP2 gathers for the layer being computed,
which it frees by shrinking their storage to 0 bytes and re-grows for the next
use (``untyped_storage().resize_``, which no tensor operation reports); so with
a sharded model (``track_training`` sees DTensors) the running total is re-read
from every live storage's size after each operation.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class TensorMemory(TorchDispatchMode):
    """``with TensorMemory() as mem: ...`` then ``mem.peak`` (bytes of live tensor storage at most)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.storages: dict[int, weakref.ref] = {}  # key -> storage, read back when sizes can change
        self.resizable = False  # set when a sharded parameter is seen (the module docstring)
        self.current = 0
        self.peak = 0

    def track(self, tensors: Iterable[torch.Tensor]) -> TensorMemory:
        """Count tensors that already exist (each storage once)."""
        for tensor in tensors:
            if isinstance(tensor, torch.Tensor):
                self._add(tensor)
        return self

    def track_training(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> TensorMemory:
        """Weights, buffers, what the fast forms keep between calls, existing gradients and optimizer state."""
        from ..fast import kept_tensors

        self.track(model.parameters())
        self.track(model.buffers())
        self.track(kept_tensors(model))
        self.track(p.grad for p in model.parameters() if p.grad is not None)
        if optimizer is not None:
            self.track(v for state in optimizer.state.values() for v in state.values())
        return self

    def _add(self, tensor: torch.Tensor) -> None:
        from torch.distributed.tensor import DTensor

        if isinstance(tensor, DTensor):
            self.resizable = True
            tensor = tensor._local_tensor
        if tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage._cdata  # the storage itself: its data pointer moves (or is 0) when FSDP2 resizes it
        if key in self.live or (storage.nbytes() == 0 and not self.resizable):
            return
        size = storage.nbytes()
        self.live[key] = size
        self.storages[key] = weakref.ref(storage)
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)
        self.storages.pop(key, None)

    def _reread_sizes(self) -> None:
        for key, ref in list(self.storages.items()):
            storage = ref()
            if storage is not None and key in self.live:
                size = storage.nbytes()
                self.current += size - self.live[key]
                self.live[key] = size
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.resizable:
            self._reread_sizes()  # a resize since the last operation (a layer's gathered weights freed)
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self._add(leaf)
        if self.resizable:
            for leaf in tree_leaves((kwargs or {}).get("out", [])):  # the gathered weights FSDP2 grew back and
                if isinstance(leaf, torch.Tensor):  # writes into (fsdp::split_with_sizes_copy(..., out=))
                    self._add(leaf)
            self._reread_sizes()
        return out


def rss_peak_bytes() -> int | None:
    """The process's resident-set high-water mark (Linux ``VmHWM``), or None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
