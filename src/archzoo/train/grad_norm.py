"""The global gradient norm that clipping divides by and ``log.jsonl`` reports as ``grad_norm``.

    ||g|| = sqrt( sum over tensors t, rows r of t:  ||g_{t,r}||^2 )

computed as the norm of each row (the last dimension) in float32, then the norm of the
row norms and of the tensors' norms in float64: no float32 sum has more terms than a row
(d_model or a hidden size), and the float64 ones have as many as a tensor has rows, which
costs nothing next to the rows' pass.

Why not ``torch.nn.utils.clip_grad_norm_``: on the CPU its norm of one float32 tensor
(``torch.linalg.vector_norm``, ``torch._foreach_norm``) adds the squares in a few running
float32 sums, and once such a sum is large each new square loses its low bits, always
downward. Measured against float64 (torch 2.13, 2-core Xeon with AMX), N(0, 1e-6)
values: 2^20 elements -1.1e-5 relative, 2^22 -8.8e-5, 2^26 (a 7B model's embedding is
2^27) -5.4e-3; by rows of 1024: -6e-8 and 5e-7, in half the time. A trained head's
gradient is worse for a float32 sum of its row norms (a few large rows, the target
tokens', then thousands of tiny ones): a 32768-token head's, -2.9e-6 that way, hence
float64 there. Rows are also how FSDP2 shards (whole rows of dim 0), so one process and
N sum the same float32 row norms and report the same norm to ~1e-7.
"""

from __future__ import annotations

import torch


def gradient_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all ``grads`` together (float64; float32 or bfloat16 gradients), accurate to ~1e-7 relative.

    DTensor shards give a DTensor whose ``full_tensor()`` is the norm of the whole gradients."""
    if not grads:
        return torch.zeros((), dtype=torch.float64)
    rows = [torch.linalg.vector_norm(g, dim=-1, dtype=torch.float32) if g.dim() > 1 else g for g in grads]
    per_tensor = [torch.linalg.vector_norm(r, dtype=torch.float64) for r in rows]
    return torch.linalg.vector_norm(torch.stack(per_tensor))
