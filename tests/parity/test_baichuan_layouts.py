"""Baichuan's remote-code layouts (no ``transformers`` class): Baichuan-7B, Baichuan-13B, Baichuan 2.

Baichuan-7B (and Baichuan 2 7B) is LLaMA with q, k, v fused into ``W_pack`` = [Q | K | V]
rows: the test converts between that layout and ``LlamaForCausalLM``'s itself and proves
the mapping both ways (transformers -> W_pack folder -> archzoo: same logits; archzoo ->
save_pretrained -> transformers: same logits). Baichuan-13B's ALiBi network has no such
class: its reference forward (``remote_code_reference.py``) is written from the
architecture's equations, on the checkpoint's tensors. Baichuan 2's NormHead is checked
against its equation, logits_v = h . w_v / ||w_v||.

Tolerance: see ``remote_code_reference.py`` (1e-5, float32, sums of at most a few hundred terms).
"""

from __future__ import annotations

import json

import pytest
import remote_code_reference as _ref  # a sibling module: pytest puts tests/parity (no __init__.py) on sys.path
import torch
import torch.nn.functional as F
import transformers

import archzoo
from archzoo.blocks.norm_head import NormHead

VOCAB = _ref.VOCAB
assert_close, batch, write_folder, hf_state = _ref.assert_close, _ref.batch, _ref.write_folder, _ref.hf_state
hf_logits, our_logits, perturb, saved_tensors = _ref.hf_logits, _ref.our_logits, _ref.perturb, _ref.saved_tensors
alibi_reference_logits, baichuan_alibi_slopes = _ref.alibi_reference_logits, _ref.baichuan_alibi_slopes
random_alibi_checkpoint = _ref.random_alibi_checkpoint


# ---- Baichuan-7B: LLaMA with W_pack ------------------------------------------------------------

LLAMA = transformers.LlamaConfig(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=False,
)  # fmt: skip


def llama_to_w_pack(state: dict, n_layers: int) -> dict:
    """LLaMA keys -> Baichuan's: q, k, v stacked as W_pack = [Q | K | V] (modeling_baichuan.py)."""
    out = dict(state)
    for i in range(n_layers):
        a = f"model.layers.{i}.self_attn."
        out[a + "W_pack.weight"] = torch.cat([out.pop(a + f"{n}_proj.weight") for n in "qkv"])
    return out


def w_pack_to_llama(state: dict, n_layers: int) -> dict:
    out = dict(state)
    for i in range(n_layers):
        a = f"model.layers.{i}.self_attn."
        for n, part in zip("qkv", out.pop(a + "W_pack.weight").chunk(3)):
            out[a + f"{n}_proj.weight"] = part
    return out


def baichuan_config(architecture: str, **extra) -> dict:
    """The keys of Baichuan's released config.json, at LLAMA's sizes."""
    c = LLAMA
    return {"architectures": [architecture], "model_type": "baichuan", "vocab_size": c.vocab_size,
            "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
            "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
            "max_position_embeddings": 64, "model_max_length": 64, "rms_norm_eps": c.rms_norm_eps,
            "hidden_act": "silu", "tie_word_embeddings": False, **extra}  # fmt: skip


@pytest.fixture
def llama():
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(LLAMA).eval()
    perturb(model)
    return model


def test_baichuan_7b_w_pack_folder_gives_llama_logits(tmp_path, llama):
    write_folder(tmp_path / "bc", baichuan_config("BaiChuanForCausalLM"), llama_to_w_pack(hf_state(llama), 2))
    ours = archzoo.load_pretrained(tmp_path / "bc")
    assert ours.config.position.kind == "rope" and not ours.config.model.norm_head
    ids = batch()
    assert_close(our_logits(ours, ids), hf_logits(llama, ids))


def test_baichuan_7b_saved_by_archzoo_is_read_by_llama(tmp_path, llama):
    write_folder(tmp_path / "bc", baichuan_config("BaiChuanForCausalLM"), llama_to_w_pack(hf_state(llama), 2))
    ours = archzoo.load_pretrained(tmp_path / "bc")
    tensors, config = saved_tensors(ours, tmp_path / "back", "BaiChuanForCausalLM")
    assert config["architectures"] == ["BaiChuanForCausalLM"] and "model.layers.0.self_attn.W_pack.weight" in tensors
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_baichuan.BaiChuanForCausalLM"  # as released
    back = transformers.LlamaForCausalLM(LLAMA).eval()
    back.load_state_dict(w_pack_to_llama(tensors, 2), strict=True)
    ids = batch(seed=1)
    assert_close(hf_logits(back, ids), our_logits(ours, ids))


# ---- Baichuan 2 7B: W_pack + RoPE + NormHead ------------------------------------------------------


def test_norm_head_is_the_equation():
    torch.manual_seed(0)
    head = NormHead(8, 5)
    h = torch.randn(3, 8)
    expected = torch.stack([torch.stack([h[t] @ head.weight[v] / head.weight[v].norm() for v in range(5)]) for t in range(3)])
    assert_close(head(h), expected)  # 8-term sums: far inside the logits' tolerance
    with torch.no_grad():
        head.weight[2] *= 7.0  # a row's length never changes its logit
    assert_close(head(h), expected)


def test_baichuan2_7b_norm_head_folder_gives_llama_logits_with_normalised_rows(tmp_path, llama):
    state = llama_to_w_pack(hf_state(llama), 2)
    write_folder(tmp_path / "bc2", baichuan_config("BaichuanForCausalLM", position_embedding="ROPE", norm_head=True), state)
    ours = archzoo.load_pretrained(tmp_path / "bc2")
    assert ours.config.model.norm_head and isinstance(ours.lm_head, NormHead)
    # the equation on the reference side: LLaMA whose head rows are w_v / ||w_v||
    with torch.no_grad():
        llama.lm_head.weight.copy_(F.normalize(llama.lm_head.weight, dim=-1))
    ids = batch()
    assert_close(our_logits(ours, ids), hf_logits(llama, ids))
    # the stored head stays raw: saving writes back the checkpoint's tensor, not a normalised one
    tensors, config = saved_tensors(ours, tmp_path / "back", "BaichuanForCausalLM")
    assert config["norm_head"] is True and config["position_embedding"] == "ROPE"
    assert torch.equal(tensors["lm_head.weight"], state["lm_head.weight"])


def test_released_baichuan2_config_json_chooses_rope_or_alibi_and_the_norm_head():
    from archzoo.models.hf.config_json import config_dict_from_hf

    base = {"architectures": ["BaichuanForCausalLM"], "vocab_size": 125696, "num_hidden_layers": 2,
            "num_attention_heads": 32, "intermediate_size": 11008, "model_max_length": 4096}  # fmt: skip
    seven = config_dict_from_hf({**base, "hidden_size": 4096}, "b7", "<7b>")
    thirteen = config_dict_from_hf({**base, "hidden_size": 5120, "num_attention_heads": 40}, "b13", "<13b>")
    v1_13b = config_dict_from_hf({**base, "vocab_size": 64000, "hidden_size": 5120, "num_attention_heads": 40}, "b", "<>")
    assert seven["position"]["kind"] == "rope" and seven["model"]["norm_head"]
    assert thirteen["position"]["kind"] == "alibi" and thirteen["model"]["norm_head"]
    assert v1_13b["position"]["kind"] == "alibi" and not v1_13b["model"]["norm_head"]


def test_norm_head_is_refused_by_layouts_that_cannot_say_it(tmp_path):
    cfg = archzoo.load_config("baichuan2-7b")
    small = cfg.replace(model=cfg.model.__class__(**{**cfg.model.__dict__, "vocab_size": 64, "d_model": 32, "n_layers": 1}),
                        attention=cfg.attention.__class__(n_heads=4), mlp=cfg.mlp.__class__(hidden=48))  # fmt: skip
    model = archzoo.build_model(small)
    with pytest.raises(archzoo.models.hf.UnsupportedConfig, match="cannot express a NormHead"):
        archzoo.save_pretrained(model, tmp_path / "x", architecture="LlamaForCausalLM")
    assert json.loads((archzoo.save_pretrained(model, tmp_path / "y") / "config.json").read_text())["norm_head"]


# ---- Baichuan-13B / Baichuan 2 13B: ALiBi, against the equations ------------------------------


def test_alibi_slopes_of_the_reference_are_the_paper_s():
    # Press et al. 2022: 8 heads -> 1/2, 1/4, ..., 1/256
    assert torch.equal(baichuan_alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))  # powers of 2: exact


@pytest.mark.parametrize("norm_head", [False, True], ids=["baichuan-13b", "baichuan2-13b"])
def test_baichuan_13b_alibi_folder_matches_the_equations_both_ways(tmp_path, norm_head):
    tensors, config = random_alibi_checkpoint()
    config["norm_head"] = norm_head  # the released files say it by vocabulary size (125696); tiny ones cannot
    write_folder(tmp_path / "bc13", config, tensors)
    ours = archzoo.load_pretrained(tmp_path / "bc13")
    assert ours.config.position.kind == "alibi" and ours.config.model.norm_head == norm_head
    ids = batch(seq=13)
    assert_close(our_logits(ours, ids), alibi_reference_logits(tensors, config, ids, norm_head))
    back, back_config = saved_tensors(ours, tmp_path / "back", "BaichuanForCausalLM")
    assert back_config["position_embedding"] == "ALIBI" and sorted(back) == sorted(tensors)
    ids = batch(seq=9, seed=5)
    assert_close(alibi_reference_logits(back, back_config, ids, norm_head), our_logits(ours, ids))
