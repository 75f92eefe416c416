"""Fast form of ``blocks.alibi.Alibi``: the bias m_h * (k - q) of one decoding query.

A decoding step (one query at the last slot) needs m_h * (j - past) over key
slots j = 0..past. That is a slice of one cached ramp, m_h * (j - n + 1) for
j < n, made once (n = 256, regrown twice as long when needed): a decoding step
then does no arithmetic for its bias. Equal: the ramp holds the same float32
products slope * distance as ``Alibi.bias`` for the same distances.

Measured: see ``fast/__init__.py`` (FORMS_MEASURED).
"""

from __future__ import annotations

import torch

from ..blocks.alibi import Alibi


class FastAlibi(Alibi):
    reference = Alibi

    def ramp(self, length: int, device: torch.device) -> torch.Tensor:
        """m_h * (j - n + 1) for j < n, ``[heads, n]`` with n >= length."""
        ramps = self.__dict__.setdefault("ramps", {})
        table = ramps.get(device)
        if table is None or table.shape[-1] < length:
            n = max(length, 2 * table.shape[-1] if table is not None else 256)
            with torch.inference_mode(False):  # kept across calls: must stay usable by autograd
                distance = torch.arange(-(n - 1), 1, device=device).float()
                table = ramps[device] = self.slopes.to(device)[:, None] * distance[None]
        return table

    def bias(self, q_len: int, kv_len: int, past: int, device: torch.device | None = None) -> torch.Tensor:
        if q_len == 1 and kv_len <= past + 1:  # decoding: a view of the cached ramp
            table = self.ramp(past + 1, device or self.slopes.device)
            start = table.shape[-1] - 1 - past  # the column of key slot 0
            return table[:, None, start : start + kv_len]
        return super().bias(q_len, kv_len, past, device)
