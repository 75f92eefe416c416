"""Parameter-efficient fine-tuning: LoRA adapters and P-tuning v2 prefixes, saved in PEFT's format.

The blocks are ``blocks/lora.py`` and ``blocks/prefix.py``; this package puts
them into a model by name, freezes the rest, and reads and writes adapter folders.
"""

from .io import load_adapter, save_adapter
from .lora import add_lora, merge_lora, unmerge_lora
from .prefix import add_prefix

__all__ = ["add_lora", "add_prefix", "load_adapter", "merge_lora", "save_adapter", "unmerge_lora"]
