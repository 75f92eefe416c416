"""archzoo: a reference zoo of transformer architectures in PyTorch.

The public API::

    cfg   = archzoo.load_config("llama-tiny")
    model = archzoo.build_model(cfg)
    rep   = archzoo.count_params(cfg)
    model = archzoo.load_pretrained("dir/")
    archzoo.save_pretrained(model, "dir/")
    new   = archzoo.generate(model, input_ids, max_new_tokens=20)
    tok   = archzoo.load_tokenizer("dir/")     # the folder's tokenizer (pip install 'archzoo[text]')
    archzoo.add_lora(model, rank=8, alpha=16, targets=("q_proj", "v_proj"))   # or add_prefix(model, length=16)
    archzoo.save_adapter(model, "adapter/")                                  # PEFT's format
    archzoo.quantize(model, "int4", group_size=128)                          # weight-only int8 / int4
"""

from .adapters import add_lora, add_prefix, load_adapter, merge_lora, save_adapter, unmerge_lora
from .config import Config, ConfigError, load_config
from .errors import ArchzooError, CheckpointError, InputError
from .generate import generate
from .inspect import count_params, estimate_memory
from .models.decoder import CausalLM, build_model
from .models.hf import load_pretrained, save_pretrained
from .models.quantize import quantize
from .text import load_tokenizer

__all__ = [
    "ArchzooError",
    "CheckpointError",
    "InputError",
    "add_lora",
    "add_prefix",
    "load_adapter",
    "merge_lora",
    "save_adapter",
    "unmerge_lora",
    "CausalLM",
    "Config",
    "ConfigError",
    "build_model",
    "count_params",
    "estimate_memory",
    "generate",
    "load_config",
    "load_pretrained",
    "load_tokenizer",
    "quantize",
    "save_pretrained",
]
__version__ = "0.1.0"
