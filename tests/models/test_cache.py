"""The KV cache is exact: prefill + token-by-token decoding gives the logits of one full forward.

For every tiny config (and MLA in both modes), in float32 within 1e-5, with
and without a left-padded batch whose rows have different lengths. The
reference is the same model run once over the whole sequence without a cache,
so any drift in positions, ALiBi biases, masks or cached tensors shows up.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

import archzoo
from archzoo.config import config_paths

TINY = sorted(name for name in config_paths() if name.endswith("-tiny"))
"""Every tiny config shipped under configs/."""

REQUIRED_TINY = {
    "llama-tiny", "bloom-tiny", "qwen2-tiny", "qwen3-tiny", "baichuan-tiny", "glm-tiny", "chatglm2-tiny",
    "deepseek-tiny", "deepseek-v2-tiny", "qwen2-moe-tiny", "qwen3-moe-tiny",
}  # fmt: skip


def variants(one_d_positions_only: bool = False) -> list[tuple[str, str | None]]:
    """(config name, MLA mode or None): MLA configs are checked in both modes."""
    out = []
    for name in TINY:
        cfg = archzoo.load_config(name)
        if one_d_positions_only and cfg.position.kind == "glm2d":
            continue
        if cfg.attention.kind == "mla":
            out += [(name, "naive"), (name, "absorbed")]
        else:
            out.append((name, None))
    return out


def tiny_model(name: str, mla_mode: str | None) -> archzoo.CausalLM:
    cfg = archzoo.load_config(name)
    # larger weights than the default init: sharper attention, so a wrong position or mask shows
    cfg = cfg.replace(model=dataclasses.replace(cfg.model, init_std=0.1))
    if mla_mode is not None:
        cfg = cfg.replace(attention=dataclasses.replace(cfg.attention, mla_mode=mla_mode))
    torch.manual_seed(0)
    return archzoo.build_model(cfg).eval()


def sequence_inputs(cfg, ids: torch.Tensor, keep: torch.Tensor):
    """Positions and mask for the whole sequence, as the model's forward takes them.

    1-D positions: the count of real tokens before each one (left padding).
    glm2d: ChatGLM-6B's prefix-LM layout (2D positions, [batch, T, T] mask) from ``archzoo.glm``.
    """
    if cfg.position.kind == "glm2d":
        from archzoo.glm import prefix_lm_inputs

        t = cfg.tokens
        inputs = prefix_lm_inputs(ids, gmask_id=t.gmask_id, mask_id=t.mask_id, sop_id=t.sop_id, padding_mask=keep)
        return inputs.position_ids, inputs.attention_mask
    positions = (keep.long().cumsum(-1) - 1).clamp(min=0)
    return positions, keep


def step_inputs(positions: torch.Tensor, mask: torch.Tensor, start: int, end: int):
    """The slice of full-sequence inputs that a cached forward over slots [start, end) takes."""
    step_mask = mask[:, :end] if mask.dim() == 2 else mask[:, start:end, :end]
    return positions[..., start:end], step_mask


def left_padded_batch(cfg, lengths: list[int], total: int, prompt_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids, rows left-padded to ``total`` (pad id 0), and the keep-mask.

    For glm2d models the prompt (the first ``prompt_len`` slots) ends in
    ``[gMASK] <sop>`` and no other token is special.
    """
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.model.vocab_size, (len(lengths), total), generator=generator)
    if cfg.position.kind == "glm2d":
        t = cfg.tokens
        for special in (t.gmask_id, t.mask_id, t.sop_id):
            ids[ids == special] = 1
        ids[:, prompt_len - 2] = t.gmask_id
        ids[:, prompt_len - 1] = t.sop_id
    keep = torch.zeros(len(lengths), total, dtype=torch.bool)
    for row, length in enumerate(lengths):
        keep[row, total - length :] = True
        ids[row, : total - length] = 0
    return ids, keep


def decode_in_pieces(model, ids, positions, mask, pieces: list[int]) -> torch.Tensor:
    """Feed ``ids`` through the cache in pieces of the given sizes; concatenated logits."""
    cache = model.new_cache(ids.shape[1])
    out, start = [], 0
    for size in pieces:
        end = start + size
        step_pos, step_mask = (None, None) if positions is None else step_inputs(positions, mask, start, end)
        out.append(model(ids[:, start:end], step_mask, step_pos, cache))
        assert cache.length == end
        start = end
    return torch.cat(out, dim=1)


def assert_close_to_rounding(cached: torch.Tensor, full: torch.Tensor) -> None:
    """Cached and full forwards compute the same sums in other blockings (a cached step's
    attention sums over its kv slots alone, a full forward's matmuls block many rows): float32
    sums of n terms drift by at most n eps_32 |x|; the widest here are n <= 128 (hidden widths),
    so the bound is 128 eps_32 max |logit|. A position or slot off by one moves logits by O(|x|)."""
    bound = 128 * torch.finfo(torch.float32).eps * full.abs().max().item()
    assert (cached - full).abs().max().item() <= bound


@pytest.mark.parametrize(("name", "mla_mode"), variants())
def test_cached_decoding_equals_full_forward(name: str, mla_mode: str | None):
    model = tiny_model(name, mla_mode)
    cfg = model.config
    prompt_len, total = 6, 11
    ids, keep = left_padded_batch(cfg, [total, total - 2, total - 3], total, prompt_len)
    positions, mask = sequence_inputs(cfg, ids, keep)
    with torch.no_grad():
        full = model(ids, mask, positions)
        pieces = [prompt_len, 2] + [1] * (total - prompt_len - 2)  # prefill, a 2-token chunk, single tokens
        cached = decode_in_pieces(model, ids, positions, mask, pieces)
    assert_close_to_rounding(cached, full)


@pytest.mark.parametrize(("name", "mla_mode"), variants(one_d_positions_only=True))
def test_cached_decoding_with_default_positions(name: str, mla_mode: str | None):
    """No mask, no positions: the model's defaults (past + arange) must line up with the cache.

    (glm2d models always take explicit 2D positions; the prefix-LM test above covers them.)
    """
    model = tiny_model(name, mla_mode)
    ids = torch.randint(0, model.config.model.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        cached = decode_in_pieces(model, ids, None, None, [4, 1, 1, 1, 1, 1])
    assert_close_to_rounding(cached, full)


def expected_values_per_token(cfg) -> int:
    """The attention kind's cache formula, per token, per layer, per sequence."""
    a = cfg.attention
    if a.kind == "mla" and a.mla_mode == "absorbed":
        return a.kv_lora_rank + a.qk_rope_head_dim  # the latent c_kv and the shared RoPE key
    if a.kind == "mla":
        return cfg.n_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim) + cfg.n_heads * a.v_head_dim
    return 2 * cfg.n_kv_heads * cfg.head_dim


@pytest.mark.parametrize(("name", "mla_mode"), variants())
def test_cache_size_per_token_matches_formula(name: str, mla_mode: str | None):
    model = tiny_model(name, mla_mode)
    cfg = model.config
    ids, keep = left_padded_batch(cfg, [5, 5, 5], 5, 5)
    positions, mask = sequence_inputs(cfg, ids, keep)
    cache = model.new_cache(8)
    with torch.no_grad():
        model(ids, mask, positions, cache)
    expected = expected_values_per_token(cfg)
    assert [layer.values_per_token() for layer in cache.layers] == [expected] * cfg.model.n_layers
    stored = sum(b.numel() * b.element_size() for layer in cache.layers for b in layer.buffers.values())
    assert stored // cache.max_len == expected * cfg.model.n_layers * 3 * 4  # per slot: batch 3, float32


def test_cache_overflow_is_a_clear_error():
    model = tiny_model("llama-tiny", None)
    cache = model.new_cache(4)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=cache)


def test_every_family_of_the_issue_has_a_tiny_config():
    assert REQUIRED_TINY <= set(TINY), sorted(REQUIRED_TINY - set(TINY))
