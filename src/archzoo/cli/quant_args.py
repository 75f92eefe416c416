"""``--quantize int8|int4`` and ``--group-size G``: the same flags for generate, bench, eval and chat."""

from __future__ import annotations

import argparse

from torch import nn

from .argtypes import positive_int


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quantize", choices=("int8", "int4"), default=None,
        help="weight-only quantization of every linear layer but the output head, in memory "
        "(archzoo.quantize; default: none; a folder saved quantized loads quantized anyway)",
    )
    parser.add_argument(
        "--group-size", type=positive_int, default=128, help="int4: input dims per scale and minimum (default: 128)"
    )


def apply_quantize(model: nn.Module, args: argparse.Namespace) -> nn.Module:
    """``model`` quantized as the flags say (unchanged without --quantize or when it is already quantized)."""
    from ..models.quantize import is_quantized, quantize

    if args.quantize is None or is_quantized(model):
        return model
    return quantize(model, args.quantize, args.group_size)
