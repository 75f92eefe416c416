"""A sharded model that never exists whole in one process, with the weights one process would give it.

One process builds ``CausalLM(cfg)`` on the CPU after ``torch.manual_seed(seed)``:
the constructors draw (``nn.Linear``'s Kaiming init), then ``init_weights`` draws
again, parameter by parameter in module order, then ``add_lora`` draws the A
matrices. Every draw advances torch's one global CPU generator, so the value of a
parameter depends on the sizes of everything drawn before it.

Here the same steps run on the ``meta`` device (nothing allocated) under
``Replay``, a ``TorchDispatchMode`` that sees each in-place initialisation of a meta
tensor:

    uniform_, normal_   drawn on a real CPU tensor of the full shape, from the same global
                        generator in the same order (so the stream advances exactly as in
                        a one-process build); this process keeps only its dim-0 shard
                        (FSDP2's rule: ``full.chunk(world)[rank]``) and frees the rest
    zero_, fill_        kept as the number
    mul_ by a number    applied to what is kept (DeepNorm's beta)

so at most one full parameter exists at a time. The meta model is then wrapped
with ``fully_shard`` (``shard.py``), moved to real memory with ``to_empty`` and each
parameter's local shard filled from what was kept; the result is, shard for
shard, the model a one-process ``build_model`` + ``add_lora`` gives
(``tests/distributed`` checks it for every tiny config). A parameter or buffer no
initialiser touched (it would hold garbage after ``to_empty``) is an error that
names it, as is a random buffer (buffers are replicated, not sharded).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ...errors import InputError

aten = torch.ops.aten
RANDOM = {aten.uniform_.default, aten.normal_.default}
FILLS = {aten.zero_.default, aten.fill_.Scalar, aten.fill_.Tensor}
SCALES = {aten.mul_.Scalar, aten.mul_.Tensor}


class Replay(TorchDispatchMode):
    """Records the initial value of every meta tensor initialised in place while active (module docstring)."""

    replays_meta_init = True  # blocks that skip their init on meta (LoRALinear) run it under this mode

    def __init__(self, rank: int, world: int):
        super().__init__()
        self.rank, self.world = rank, world
        self.values: dict[int, tuple[torch.Tensor, object]] = {}  # id -> (the tensor, kept alive; shard | number)

    def shard(self, full: torch.Tensor) -> torch.Tensor:
        if full.dim() == 0:
            return full.clone()
        chunks = full.chunk(self.world, dim=0)
        return chunks[self.rank].clone() if self.rank < len(chunks) else full[:0].clone()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else None
        if not (isinstance(target, torch.Tensor) and target.is_meta) or func not in RANDOM | FILLS | SCALES:
            return func(*args, **kwargs)
        if func in RANDOM:
            full = torch.empty(target.shape, dtype=target.dtype)
            func(full, *args[1:], **kwargs)  # the same draw, from the same generator, as on the CPU
            self.values[id(target)] = (target, self.shard(full))
            return target  # the meta kernel of a random op would import torch._dynamo (~5 s) for nothing
        elif func in FILLS:
            value = args[1] if len(args) > 1 else 0.0
            if isinstance(value, torch.Tensor):
                if value.is_meta:
                    return func(*args, **kwargs)  # not a constant: left unrecorded (an error later, by name)
                value = value.item()
            self.values[id(target)] = (target, float(value))
        else:
            other = args[1]
            if isinstance(other, torch.Tensor):
                if other.is_meta or other.dim() != 0:
                    self.values.pop(id(target), None)  # scaled by a tensor: no longer known
                    return func(*args, **kwargs)
                other = other.item()
            if id(target) in self.values:
                kept_target, kept = self.values[id(target)]
                self.values[id(target)] = (kept_target, kept * other)
        return func(*args, **kwargs)

    def value_of(self, tensor: torch.Tensor):
        entry = self.values.get(id(tensor))
        return None if entry is None or entry[0] is not tensor else entry[1]


def recorded_values(model: nn.Module, replay: Replay) -> dict[str, object]:
    """FQN -> kept shard or number, for every parameter (tied ones under each name) and buffer."""
    found, missing = {}, []
    for name, tensor in [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]:
        value = replay.value_of(tensor)
        if value is None:
            missing.append(name)
        found[name] = value
    if missing:
        raise InputError(f"cannot initialise by parts: no initialiser set {', '.join(missing[:5])} (it would hold garbage)")
    return found


@torch.no_grad()
def fill_shards(model: nn.Module, values: dict[str, object], device: torch.device) -> None:
    """``to_empty`` the sharded meta model, then give every local shard and buffer its recorded value."""
    from torch.distributed.tensor import DTensor

    buffers = {name for name, _ in model.named_buffers()}
    model.to_empty(device=device)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        value = values[name]
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        if isinstance(value, float):
            local.fill_(value)
        elif name in buffers:
            raise InputError(f"cannot initialise by parts: buffer {name} is random (buffers are replicated, not sharded)")
        elif tuple(value.shape) != tuple(local.shape):
            raise InputError(f"cannot initialise by parts: {name} local shard {tuple(local.shape)}, recorded {tuple(value.shape)}")
        else:
            local.copy_(value)
