"""Shared by the remote-code layout tests: helpers, and reference forwards written from the
architectures' equations (Baichuan-13B's ALiBi network, DeepSeekMoE), computed on a checkpoint's
tensors directly, with nothing from archzoo.

Loaded by path (``_load_reference()`` in each test file), whatever pytest's import mode.

Tolerance on float32 logits: the two sides compute the same sums of at most WIDEST_SUM = 96
terms (hidden 64, MLP hidden 88 or 96) in different orders (a fused or split matmul, SDPA or an
explicit softmax), and such sums differ by at most N eps max|logit| (tests/tolerances.py,
``fp32_forward``: 1.1e-5 for logits of size 1), ~1e-6 typically; the DESIGN's 1e-5 is kept where
it is larger. Anything wrong (a swapped half, a missing bias, an unnormalised row) moves logits by
1e-2 or more.
"""

from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import archzoo
import tolerances as tol

TOLERANCE = 1e-5  # DESIGN: logits within 1e-5 in float32
WIDEST_SUM = 96  # the most terms one sum of these tiny models adds
VOCAB = 96


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=max(TOLERANCE, tol.fp32_forward(WIDEST_SUM, b)))


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



# ---- reference forwards ---------------------------------------------------------------------


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
