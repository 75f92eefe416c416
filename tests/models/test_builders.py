"""The config -> block layer: blocks take explicit arguments and never read config/;
every attention kind answers the cost questions inspect/ asks, and its KV answer
is what the block really stores."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import archzoo
from archzoo.models.builders import ATTENTION_KINDS

BLOCKS = Path(archzoo.__file__).parent / "blocks"


@pytest.mark.parametrize("path", sorted(BLOCKS.glob("*.py")), ids=lambda p: p.name)
def test_blocks_import_nothing_from_config(path):
    # nor from models/ or inspect/: blocks are built from explicit arguments only
    imported = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
    packages = [m.removeprefix("archzoo.").lstrip(".").split(".")[0] for m in imported if m.startswith(("..", "archzoo"))]
    assert not {"config", "models", "inspect"} & set(packages), imported


@pytest.mark.parametrize(("name", "kind"), [("llama-tiny", "mha"), ("qwen3-tiny", "mha"), ("deepseek-tiny", "mla")])
def test_each_attention_kind_stores_what_it_says(name, kind):
    cfg = archzoo.load_config(name)
    assert cfg.attention.kind == kind and kind in ATTENTION_KINDS
    torch.manual_seed(0)
    model = archzoo.build_model(cfg)
    cache = model.new_cache(8)
    model(torch.randint(0, cfg.model.vocab_size, (2, 3)), cache=cache)
    attn = model.layers[0].attn
    assert all(layer.values_per_token() == attn.kv_values_per_token() for layer in cache.layers)
    d_qk, d_v = attn.score_widths()
    assert d_qk == cfg.n_heads * cfg.qk_head_dim and d_v > 0
    assert attn.activation_values() > d_qk + d_v
