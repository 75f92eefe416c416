"""Remote-code layouts (no ``transformers`` class): Baichuan, Baichuan 2, Qwen v1, ChatGLM3, DeepSeekMoE.

Where ``transformers`` has a class of the same network under other names, the
test converts between the two key layouts itself, from the remote code's
definition (W_pack = [Q | K | V] rows; Qwen v1's c_attn = [Q | K | V] with bias,
``c_proj(w1(x) * silu(w2(x)))``), and proves the mapping both ways:

    transformers model -> remote-code folder -> archzoo.load_pretrained : same logits
    archzoo model -> save_pretrained (remote-code folder) -> transformers model : same logits

Baichuan-13B's ALiBi network and DeepSeekMoE (MHA with DeepSeek's MoE layer) have
no such class: their reference forwards are written below from the architectures'
equations, on the remote-code tensors directly.
Baichuan 2's NormHead is checked against its equation, logits_v = h . w_v / ||w_v||.

Tolerance 1e-5 on float32 logits of size ~1: the two sides compute the same sums
of at most a few hundred terms in different orders (a fused or split matmul, SDPA
or an explicit softmax), and such sums differ by about N * eps * |x| ~ 300 x 6e-8 =
2e-5 at worst, ~1e-6 typically; anything wrong (a swapped half, a missing bias, an
unnormalised row) moves logits by 1e-2 or more.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file

import archzoo
from archzoo.blocks.norm_head import NormHead

TOLERANCE = 1e-5
VOCAB = 96


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)


def batch(seq: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, seq), generator=torch.Generator().manual_seed(seed))


def write_folder(folder, config: dict, tensors: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))


def hf_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def hf_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def our_logits(model, ids) -> torch.Tensor:
    with torch.no_grad():
        return model(ids)


def perturb(model, seed: int = 1) -> None:
    """Norm gains and biases away from 1 and 0, so a dropped or swapped one shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


def saved_tensors(model, folder, architecture: str) -> tuple[dict, dict]:
    archzoo.save_pretrained(model, folder, architecture=architecture)
    return load_file(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text())


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
    assert_close(head(h), expected)
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


def baichuan_alibi_slopes(n: int) -> torch.Tensor:
    """modeling_baichuan.py's _get_interleave: m_h = 2^(-8h/n) for a power of two n; otherwise the
    slopes of the closest smaller power c, then every other slope of 2c."""

    def power_of_2(k):
        start = 2 ** (-(2 ** -(math.log2(k) - 3)))
        return [start * start**i for i in range(k)]

    if math.log2(n).is_integer():
        return torch.tensor(power_of_2(n))
    c = 2 ** math.floor(math.log2(n))
    return torch.tensor(power_of_2(c) + power_of_2(2 * c)[0::2][: n - c])


def rms(x, g, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g


def alibi_reference_logits(t: dict, c: dict, ids: torch.Tensor, norm_head: bool) -> torch.Tensor:
    """Baichuan-13B from its equations, on the W_pack checkpoint's tensors:
    h_0 = E[x]; per layer a = RMSNorm(h); [q|k|v] = a W_pack^T;
    scores_h(i, j) = q_i . k_j / sqrt(d_h) + m_h (j - i) for j <= i, -inf after;
    h += softmax(scores) v W_o^T; h += W_down (silu(W_gate b) * W_up b), b = RMSNorm(h);
    logits = RMSNorm(h) W^T (rows of W normalised first with the NormHead)."""
    n_heads, eps = c["num_attention_heads"], c["rms_norm_eps"]
    h = t["model.embed_tokens.weight"][ids]
    batch_size, seq, d = h.shape
    hd = d // n_heads
    pos = torch.arange(seq)
    distance = (pos[None, :] - pos[:, None]).float()  # j - i
    bias = baichuan_alibi_slopes(n_heads)[:, None, None] * distance
    bias = bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms(h, t[p + "input_layernorm.weight"], eps)
        q, k, v = (a @ t[p + "self_attn.W_pack.weight"].T).split(d, dim=-1)
        q, k, v = (x.view(batch_size, seq, n_heads, hd).transpose(1, 2) for x in (q, k, v))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
        h = h + (probs @ v).transpose(1, 2).reshape(batch_size, seq, d) @ t[p + "self_attn.o_proj.weight"].T
        b = rms(h, t[p + "post_attention_layernorm.weight"], eps)
        gate, up = b @ t[p + "mlp.gate_proj.weight"].T, b @ t[p + "mlp.up_proj.weight"].T
        h = h + (F.silu(gate) * up) @ t[p + "mlp.down_proj.weight"].T
    head = t["lm_head.weight"]
    if norm_head:
        head = head / head.norm(dim=-1, keepdim=True)
    return rms(h, t["model.norm.weight"], eps) @ head.T


def random_alibi_checkpoint(n_heads: int = 5, d: int = 80, hidden: int = 96, layers: int = 2) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(3)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    t = {"model.embed_tokens.weight": r(VOCAB, d) * 10, "lm_head.weight": r(VOCAB, d) * 3, "model.norm.weight": 1 + r(d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t |= {p + "self_attn.W_pack.weight": r(3 * d, d), p + "self_attn.o_proj.weight": r(d, d),
              p + "mlp.gate_proj.weight": r(hidden, d), p + "mlp.up_proj.weight": r(hidden, d),
              p + "mlp.down_proj.weight": r(d, hidden), p + "input_layernorm.weight": 1 + r(d),
              p + "post_attention_layernorm.weight": 1 + r(d)}  # fmt: skip
    config = {"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "vocab_size": VOCAB,
              "hidden_size": d, "intermediate_size": hidden, "num_hidden_layers": layers,
              "num_attention_heads": n_heads, "model_max_length": 64, "rms_norm_eps": 1e-6,
              "hidden_act": "silu", "tie_word_embeddings": False}  # fmt: skip
    return t, config


def test_alibi_slopes_of_the_reference_are_the_paper_s():
    # Press et al. 2022: 8 heads -> 1/2, 1/4, ..., 1/256
    assert torch.allclose(baichuan_alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))


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


# ---- Qwen v1: Qwen2 with one kv head per head, c_attn and w1/w2 ------------------------------------

QWEN2 = transformers.Qwen2Config(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=4, rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=64,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
)  # fmt: skip


def qwen2_to_qwen_v1(state: dict, n_layers: int) -> dict:
    """Qwen2 keys -> QWenLMHeadModel's (modeling_qwen.py): c_attn = [Q | K | V] (weight and bias),
    QWenMLP = c_proj(w1(x) * silu(w2(x))): w2 is the gate, w1 the up projection."""
    out = {"transformer.wte.weight": state["model.embed_tokens.weight"],
           "transformer.ln_f.weight": state["model.norm.weight"], "lm_head.weight": state["lm_head.weight"]}  # fmt: skip
    for i in range(n_layers):
        s, h = f"model.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            out[h + f"attn.c_attn.{p}"] = torch.cat([state[s + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
        out[h + "attn.c_proj.weight"] = state[s + "self_attn.o_proj.weight"]
        out[h + "ln_1.weight"] = state[s + "input_layernorm.weight"]
        out[h + "ln_2.weight"] = state[s + "post_attention_layernorm.weight"]
        out[h + "mlp.w2.weight"] = state[s + "mlp.gate_proj.weight"]
        out[h + "mlp.w1.weight"] = state[s + "mlp.up_proj.weight"]
        out[h + "mlp.c_proj.weight"] = state[s + "mlp.down_proj.weight"]
    return out


def qwen_v1_to_qwen2(state: dict, n_layers: int) -> dict:
    out = {"model.embed_tokens.weight": state["transformer.wte.weight"],
           "model.norm.weight": state["transformer.ln_f.weight"], "lm_head.weight": state["lm_head.weight"]}  # fmt: skip
    for i in range(n_layers):
        s, h = f"model.layers.{i}.", f"transformer.h.{i}."
        for p in ("weight", "bias"):
            for n, part in zip("qkv", state[h + f"attn.c_attn.{p}"].chunk(3)):
                out[s + f"self_attn.{n}_proj.{p}"] = part
        out[s + "self_attn.o_proj.weight"] = state[h + "attn.c_proj.weight"]
        out[s + "input_layernorm.weight"] = state[h + "ln_1.weight"]
        out[s + "post_attention_layernorm.weight"] = state[h + "ln_2.weight"]
        out[s + "mlp.gate_proj.weight"] = state[h + "mlp.w2.weight"]
        out[s + "mlp.up_proj.weight"] = state[h + "mlp.w1.weight"]
        out[s + "mlp.down_proj.weight"] = state[h + "mlp.c_proj.weight"]
    return out


QWEN_V1_CONFIG = {
    "architectures": ["QWenLMHeadModel"], "model_type": "qwen", "vocab_size": VOCAB, "hidden_size": 64,
    "intermediate_size": 2 * 88, "num_hidden_layers": 2, "num_attention_heads": 4, "kv_channels": 16,
    "seq_length": 64, "max_position_embeddings": 64, "layer_norm_epsilon": 1e-6, "rotary_emb_base": 10000,
    "rotary_pct": 1.0, "no_bias": True, "use_dynamic_ntk": True, "use_logn_attn": True, "tie_word_embeddings": False,
}  # fmt: skip


@pytest.fixture
def qwen2():
    torch.manual_seed(0)
    model = transformers.Qwen2ForCausalLM(QWEN2).eval()
    perturb(model)
    return model


def test_qwen_v1_folder_gives_qwen2_logits(tmp_path, qwen2):
    write_folder(tmp_path / "qwen", QWEN_V1_CONFIG, qwen2_to_qwen_v1(hf_state(qwen2), 2))
    ours = archzoo.load_pretrained(tmp_path / "qwen")
    assert (ours.config.mlp_hidden, ours.config.n_kv_heads, ours.config.model.max_seq_len) == (88, 4, 64)
    ids = batch()
    assert_close(our_logits(ours, ids), hf_logits(qwen2, ids))


def test_qwen_v1_saved_by_archzoo_is_read_as_qwen2(tmp_path, qwen2):
    write_folder(tmp_path / "qwen", QWEN_V1_CONFIG, qwen2_to_qwen_v1(hf_state(qwen2), 2))
    ours = archzoo.load_pretrained(tmp_path / "qwen")
    tensors, config = saved_tensors(ours, tmp_path / "back", "QWenLMHeadModel")
    assert config["intermediate_size"] == 176 and config["no_bias"] is True
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_qwen.QWenLMHeadModel"  # as Qwen-72B's config.json
    assert (config["use_dynamic_ntk"], config["use_logn_attn"]) == (False, False)  # not implemented: not claimed
    back = transformers.Qwen2ForCausalLM(QWEN2).eval()
    back.load_state_dict(qwen_v1_to_qwen2(tensors, 2), strict=True)
    ids = batch(seed=2)
    assert_close(hf_logits(back, ids), our_logits(ours, ids))


# ---- ChatGLM3-6B: the ChatGLM2 layout, against transformers' Glm (same network) -----------------


GLM = transformers.GlmConfig(
    vocab_size=VOCAB, hidden_size=64, intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=16, attention_bias=True, rms_norm_eps=1e-5, tie_word_embeddings=False,
    max_position_embeddings=64, pad_token_id=0,
)  # fmt: skip


def glm_to_chatglm3(state: dict, n_layers: int) -> dict:
    """transformers Glm keys -> ChatGLM3-6B's (modeling_chatglm.py): query_key_value = [Q | K | V],
    dense_h_to_4h = the same gate-first [gate | up] as gate_up_proj."""
    out = {"transformer.embedding.word_embeddings.weight": state["model.embed_tokens.weight"],
           "transformer.encoder.final_layernorm.weight": state["model.norm.weight"],
           "transformer.output_layer.weight": state["lm_head.weight"]}  # fmt: skip
    for i in range(n_layers):
        s, h = f"model.layers.{i}.", f"transformer.encoder.layers.{i}."
        for p in ("weight", "bias"):
            out[h + f"self_attention.query_key_value.{p}"] = torch.cat([state[s + f"self_attn.{n}_proj.{p}"] for n in "qkv"])
        out[h + "self_attention.dense.weight"] = state[s + "self_attn.o_proj.weight"]
        out[h + "input_layernorm.weight"] = state[s + "input_layernorm.weight"]
        out[h + "post_attention_layernorm.weight"] = state[s + "post_attention_layernorm.weight"]
        out[h + "mlp.dense_h_to_4h.weight"] = state[s + "mlp.gate_up_proj.weight"]
        out[h + "mlp.dense_4h_to_h.weight"] = state[s + "mlp.down_proj.weight"]
    return out


ARCH_CHATGLM3_TINY = {
    "architectures": ["ChatGLMModel"], "model_type": "chatglm", "add_bias_linear": False, "add_qkv_bias": True,
    "apply_residual_connection_post_layernorm": False, "ffn_hidden_size": 88, "hidden_size": 64,
    "kv_channels": 16, "layernorm_epsilon": 1e-5, "multi_query_attention": True, "multi_query_group_num": 2,
    "num_attention_heads": 4, "num_layers": 2, "original_rope": True, "padded_vocab_size": VOCAB,
    "post_layer_norm": True, "rmsnorm": True, "seq_length": 64, "tie_word_embeddings": False,
}  # fmt: skip
"""chatglm3-6b's config.json keys (released_hf_configs_added), at GLM's sizes."""


def test_chatglm3_folder_loads_to_glm_logits(tmp_path):
    torch.manual_seed(0)
    glm = transformers.GlmForCausalLM(GLM).eval()
    perturb(glm)
    write_folder(tmp_path / "glm3", ARCH_CHATGLM3_TINY, glm_to_chatglm3(hf_state(glm), 2))
    ours = archzoo.load_pretrained(tmp_path / "glm3")
    ids = batch()
    assert_close(our_logits(ours, ids), hf_logits(glm, ids))


def test_chatglm3_folder_saved_as_glm_is_read_by_transformers_natively(tmp_path):
    """The README's way out of remote code for ChatGLM2/3-style layers: save as GlmForCausalLM."""
    torch.manual_seed(1)
    glm = transformers.GlmForCausalLM(GLM).eval()
    perturb(glm, seed=2)
    write_folder(tmp_path / "glm3", {**ARCH_CHATGLM3_TINY}, glm_to_chatglm3(hf_state(glm), 2))
    ours = archzoo.load_pretrained(tmp_path / "glm3")
    archzoo.save_pretrained(ours, tmp_path / "hf", architecture="GlmForCausalLM")
    native = transformers.GlmForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = batch(seed=3)
    assert_close(hf_logits(native, ids), our_logits(ours, ids))


# ---- DeepSeekMoE 16B (DeepseekForCausalLM): against the equations --------------------------------


def rope_half(x: torch.Tensor, theta: float) -> torch.Tensor:
    """RoPE in the half layout (rotate_half): pairs (i, i + d/2) turn by p * theta^(-2i/d)."""
    seq, d = x.shape[-2], x.shape[-1]
    angles = torch.arange(seq)[:, None].float() * theta ** (-torch.arange(0, d, 2).float() / d)[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


def swiglu(x, t: dict, prefix: str) -> torch.Tensor:
    return (F.silu(x @ t[prefix + "gate_proj.weight"].T) * (x @ t[prefix + "up_proj.weight"].T)) @ t[prefix + "down_proj.weight"].T


def deepseek_moe_reference_logits(t: dict, c: dict, ids: torch.Tensor) -> torch.Tensor:
    """modeling_deepseek.py as equations: pre-RMSNorm LLaMA attention (causal, RoPE, 1/sqrt(d_h));
    layers < first_k_dense_replace a SwiGLU, later ones
        p = softmax(x W_gate^T);  y = sum_{e in top-k(p)} p_e SwiGLU_e(x) + SwiGLU_shared(x)
    (top-k weights not renormalised: norm_topk_prob false)."""
    n_heads, eps = c["num_attention_heads"], c["rms_norm_eps"]
    h = t["model.embed_tokens.weight"][ids]
    b, seq, d = h.shape
    hd = d // n_heads
    causal = torch.full((seq, seq), float("-inf")).triu(1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = rms(h, t[p + "input_layernorm.weight"], eps)
        q, k, v = ((a @ t[p + f"self_attn.{n}_proj.weight"].T).view(b, seq, n_heads, hd).transpose(1, 2) for n in "qkv")
        q, k = rope_half(q, c["rope_theta"]), rope_half(k, c["rope_theta"])
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + causal, dim=-1)
        h = h + (probs @ v).transpose(1, 2).reshape(b, seq, d) @ t[p + "self_attn.o_proj.weight"].T
        x = rms(h, t[p + "post_attention_layernorm.weight"], eps)
        if i < c["first_k_dense_replace"]:
            h = h + swiglu(x, t, p + "mlp.")
            continue
        scores = torch.softmax(x @ t[p + "mlp.gate.weight"].T, dim=-1)
        weights, chosen = scores.topk(c["num_experts_per_tok"], dim=-1)
        routed = torch.zeros_like(x)
        for e in range(c["n_routed_experts"]):
            weight_e = (weights * (chosen == e)).sum(-1, keepdim=True)  # 0 where e was not chosen
            routed = routed + weight_e * swiglu(x, t, p + f"mlp.experts.{e}.")
        h = h + routed + swiglu(x, t, p + "mlp.shared_experts.")
    return rms(h, t["model.norm.weight"], eps) @ t["lm_head.weight"].T


def random_deepseek_moe_checkpoint() -> tuple[dict, dict]:
    d, hidden, e_hidden, n_exp, shared, layers = 64, 96, 24, 6, 2, 3
    g = torch.Generator().manual_seed(4)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    mlp = lambda p, w: {p + "gate_proj.weight": r(w, d), p + "up_proj.weight": r(w, d), p + "down_proj.weight": r(d, w)}  # noqa: E731
    t = {"model.embed_tokens.weight": r(VOCAB, d) * 10, "lm_head.weight": r(VOCAB, d) * 3, "model.norm.weight": 1 + r(d)}
    for i in range(layers):
        p = f"model.layers.{i}."
        t |= {p + f"self_attn.{n}_proj.weight": r(d, d) for n in "qkvo"}
        t |= {p + "input_layernorm.weight": 1 + r(d), p + "post_attention_layernorm.weight": 1 + r(d)}
        if i == 0:
            t |= mlp(p + "mlp.", hidden)
        else:
            t |= {p + "mlp.gate.weight": r(n_exp, d) * 10} | mlp(p + "mlp.shared_experts.", shared * e_hidden)
            for e in range(n_exp):
                t |= mlp(p + f"mlp.experts.{e}.", e_hidden)
    config = {"architectures": ["DeepseekForCausalLM"], "model_type": "deepseek", "vocab_size": VOCAB, "hidden_size": d,
              "intermediate_size": hidden, "moe_intermediate_size": e_hidden, "num_hidden_layers": layers,
              "num_attention_heads": 4, "num_key_value_heads": 4, "n_routed_experts": n_exp, "n_shared_experts": shared,
              "num_experts_per_tok": 2, "first_k_dense_replace": 1, "moe_layer_freq": 1, "norm_topk_prob": False,
              "scoring_func": "softmax", "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 64,
              "hidden_act": "silu", "tie_word_embeddings": False}  # fmt: skip
    return t, config


def test_deepseek_moe_folder_matches_the_equations_both_ways(tmp_path):
    tensors, config = random_deepseek_moe_checkpoint()
    write_folder(tmp_path / "dsmoe", config, tensors)
    ours = archzoo.load_pretrained(tmp_path / "dsmoe")
    assert [plan.mlp for plan in ours.config.layer_plan] == ["dense", "moe", "moe"]
    ids = batch(seq=10)
    assert_close(our_logits(ours, ids), deepseek_moe_reference_logits(tensors, config, ids))
    back, back_config = saved_tensors(ours, tmp_path / "back", "DeepseekForCausalLM")
    assert sorted(back) == sorted(tensors) and back_config["auto_map"]["AutoModelForCausalLM"].endswith("DeepseekForCausalLM")
    ids = batch(seq=8, seed=6)
    assert_close(deepseek_moe_reference_logits(back, back_config, ids), our_logits(ours, ids))
