"""Supported Hugging Face architectures: ``architectures[0]`` of config.json -> family table.

The order matters when saving a model that was not loaded from a checkpoint:
the first architecture that can express its config is used.
"""

from __future__ import annotations

from . import baichuan, bloom, chatglm, deepseek, deepseek_moe, glm, llama, qwen, qwen_moe, qwen_v1
from .family import HFFamily

FAMILIES: list[HFFamily] = [
    qwen.QWEN3_FAMILY,
    qwen.QWEN2_FAMILY,
    llama.FAMILY,
    bloom.FAMILY,
    glm.FAMILY,
    chatglm.FAMILY,
    deepseek.V3_FAMILY,
    deepseek.V2_FAMILY,
    qwen_moe.QWEN3_MOE_FAMILY,
    qwen_moe.QWEN2_MOE_FAMILY,
    baichuan.BAICHUAN_7B_FAMILY,
    baichuan.BAICHUAN_FAMILY,
    qwen_v1.FAMILY,
    deepseek_moe.FAMILY,
]

ARCHITECTURES: dict[str, HFFamily] = {f.architecture: f for f in FAMILIES}
