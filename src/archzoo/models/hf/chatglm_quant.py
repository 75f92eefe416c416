"""ChatGLM-6B's released INT8 / INT4 checkpoints (THUDM/chatglm-6b-int8, -int4) in archzoo's quantized block.

The format, as THUDM's ``quantization.py`` (``QuantizedLinear``, ``quantize``) and the CPU
kernels shipped beside it (``quantization_kernels.c``: ``compress_int4_weight``,
``extract_int4_weight_to_float``) define it:

* config.json ``quantization_bit``: 8 or 4 (0 or absent: a float checkpoint);
  ``quantization_embeddings``: false (the "-qe" variant, whose embedding is quantized
  and shared with ``lm_head``, is not supported).
* In every layer ``attention.query_key_value``, ``attention.dense``, ``mlp.dense_h_to_4h``
  and ``mlp.dense_4h_to_h`` hold

      weight        int8 [out, in]          (8-bit)
                    int8 [out, in / 2]      (4-bit: two codes per byte)
      weight_scale  float16 [out]
      bias          float16 [out]

  symmetric, one scale per output row i, round to nearest:

      s_i = max_j |W_ij| / (2^(b-1) - 1)   (127 or 7; rounded to float16)
      q_ij = round(W_ij / s_i)             W'_ij = s_i q_ij

  4-bit bytes: byte j of a row holds column 2j in its HIGH nibble and column 2j+1 in its
  low nibble, each a two's-complement 4-bit integer (-8..7; read back by arithmetic
  shifts, ``int8 >> 4`` and ``(int8 << 4) >> 4``).
* The word embedding, ``lm_head`` and the layer norms stay float16.

archzoo's block holds the same numbers, losslessly and in the same bytes: int8 is its own
per-row layout (``qweight`` = weight, ``scales`` = weight_scale); int4 is the block's
symmetric form with one group per row (``symmetric=True``, ``group_size=None``), whose
codes sit offset by 8 with column 2j in the LOW nibble. For a two's-complement nibble
q & 0xF, q + 8 = (q & 0xF) XOR 8, so each byte is converted as

    byte' = ((byte >> 4) XOR 8) | (((byte & 0xF) XOR 8) << 4)

(ChatGLM's 0x87, codes -8 and 7, becomes 0xF0: low nibble 0 = -8 + 8, high nibble 15 = 7 + 8)

and W' = s (nibble' - 8) = s q exactly. The rows of ``query_key_value`` are then split per
head into q / k / v like the float weights (``chatglm.py``); a row's scale travels with it.
Exactly the layers THUDM quantizes are the ones ``archzoo.quantize`` converts here (every
linear but the skipped head). THUDM ships these as ``pytorch_model.bin``; archzoo reads
safetensors only, so convert the file once (``safetensors.torch.save_file`` of the loaded
state dict) before loading.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ...errors import CheckpointError
from .family import UnsupportedConfig

QUANTIZED_LINEARS = ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")
_CODES = re.compile(r"^transformer\.layers\.\d+\.(" + "|".join(map(re.escape, QUANTIZED_LINEARS)) + r")\.weight$")


def recipe(hf: dict) -> dict | None:
    """``archzoo.quantize``'s arguments that give this checkpoint's layout; None for a float checkpoint."""
    bits = hf.get("quantization_bit") or 0
    if not bits:
        return None
    if bits not in (4, 8):
        raise UnsupportedConfig(f"ChatGLMModel: quantization_bit = {bits!r}; ChatGLM-6B's checkpoints use 8 or 4")
    if hf.get("quantization_embeddings"):
        raise UnsupportedConfig("ChatGLMModel: quantization_embeddings = true (a quantized embedding shared with "
                                "lm_head, chatglm-6b-int4-qe) is not supported; the int4 / int8 checkpoints keep it float")
    return {"mode": f"int{bits}", "group_size": None, "symmetric": bits == 4, "skip": ["lm_head"], "embeddings": False}


def integer_key(key: str) -> bool:
    """Whether checkpoint key ``key`` holds the int8 codes of a quantized linear."""
    return _CODES.match(key) is not None


def chatglm_int4_to_archzoo(packed: torch.Tensor) -> torch.Tensor:
    """ChatGLM's int4 bytes (column 2j high nibble, two's complement) -> the block's (2j low, offset 8), uint8."""
    b = packed.view(torch.uint8)
    return ((b >> 4) ^ 8) | (((b & 0x0F) ^ 8) << 4)


def codes_to_archzoo(state: dict[str, torch.Tensor], q: dict, folder: Path) -> dict[str, torch.Tensor]:
    """Checkpoint tensors with each quantized ``<linear>.weight`` / ``.weight_scale`` pair as the block's
    ``<linear>.qweight`` / ``.scales`` (still under the checkpoint's names, for the family's rules)."""
    bits = int(q["mode"][3:])
    out = dict(state)
    for key in [k for k in state if integer_key(k)]:
        base = key.removesuffix(".weight")
        codes, scale = out.pop(key), out.pop(base + ".weight_scale", None)
        where = f"{folder}: {key}"
        if codes.dtype != torch.int8 or codes.dim() != 2:
            raise CheckpointError(f"{where} is {codes.dtype} {list(codes.shape)}; config.json quantization_bit = {bits} "
                                  "says int8 codes [out, in] (8-bit) or [out, in / 2] (4-bit)")
        if scale is None or not scale.is_floating_point() or scale.shape != codes.shape[:1]:
            got = "absent" if scale is None else f"{scale.dtype} {list(scale.shape)}"
            raise CheckpointError(f"{folder}: {base}.weight_scale is {got}; quantization_bit = {bits} needs one "
                                  f"float scale per output row, [{codes.shape[0]}]")
        out[base + ".qweight"] = codes if bits == 8 else chatglm_int4_to_archzoo(codes)
        out[base + ".scales"] = scale if bits == 8 else scale[:, None]  # int4: [out, groups], one group
    stray = sorted(k for k in out if k.endswith(".weight_scale"))
    if stray:
        raise CheckpointError(f"{folder}: {stray[0]} has no int8 weight beside it (quantized layers: {', '.join(QUANTIZED_LINEARS)})")
    return out
