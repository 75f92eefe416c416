"""P-tuning v2: trainable keys and values ahead of every layer's sequence (Liu et al. 2021,
"P-Tuning v2"; Li & Liang 2021, "Prefix-Tuning"; ChatGLM-6B's ``ptuning/``).

Each layer l gets P trainable key and value vectors per kv head, placed before
the sequence's own, so every token attends to them as to an unseen past:

    K_l' = [P^K_l ; K_l]     V_l' = [P^V_l ; V_l]      (``[G, P + past + seq, head_dim]``)
    head_j = softmax(q_j K_g(j)'^T * s + B') V_g(j)'

B' is the mask extended with P columns every query may see (padding never
hides the prefix). The prefix is not rotated or normed: it *is* a key, not a
token. It takes the first P slots, so the sequence's default positions start at
P (as transformers + PEFT number them); RoPE scores depend only on differences
of positions, so a model given positions 0.. instead gives the same result up
to rounding. G = n_kv_heads: under GQA / MQA the prefix is as narrow as the cache.

The table of all layers, ``[P, n_layers x 2 x G x head_dim]`` (layer l's key at
block 2l, its value at 2l + 1: PEFT's ``prompt_embeddings`` layout), is either
trained directly or produced by a projection (P-tuning v2's ``prefix_projection``,
PEFT's ``PrefixEncoder``):

    table = W_2 tanh(W_1 E + b_1) + b_2     E: ``[P, G x head_dim]`` trainable embedding

In a forward without a KV cache the prefix is each layer's past (``PrefixPast``:
concatenated ahead, differentiable, and recomputed like any input under
activation checkpointing); with a cache, it fills the first P slots once.
"""

from __future__ import annotations

import torch
from torch import nn

from .cache import KVCache, LayerCache


class PrefixEncoder(nn.Module):
    """P trainable key/value vectors per layer and kv head (optionally through an MLP)."""

    def __init__(
        self,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        length: int,
        *,
        projection_hidden: int | None = None,
    ):
        super().__init__()
        self.n_layers, self.n_kv_heads, self.head_dim, self.length = n_layers, n_kv_heads, head_dim, length
        self.token_dim = n_kv_heads * head_dim
        width = n_layers * 2 * self.token_dim
        self.projection_hidden = projection_hidden
        if projection_hidden:
            self.embedding = nn.Embedding(length, self.token_dim)
            self.transform = nn.Sequential(
                nn.Linear(self.token_dim, projection_hidden), nn.Tanh(), nn.Linear(projection_hidden, width)
            )
        else:
            self.embedding = nn.Embedding(length, width)
            self.transform = None

    def table(self) -> torch.Tensor:
        """``[P, n_layers x 2 x G x head_dim]``: every layer's prefix keys and values."""
        if self.transform is None:
            return self.embedding.weight
        return self.transform(self.embedding.weight)

    def key_values(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (key, value), each ``[batch, G, P, head_dim]``."""
        table = self.table().view(self.length, self.n_layers * 2, self.n_kv_heads, self.head_dim)
        blocks = table.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch, -1, -1, -1)  # [2L, b, G, P, d]
        return [(blocks[2 * layer], blocks[2 * layer + 1]) for layer in range(self.n_layers)]

    def as_past(
        self, cache: KVCache | None, batch: int, attention_mask: torch.Tensor | None
    ) -> tuple[list, torch.Tensor | None, int]:
        """(per-layer caches, attention mask covering the prefix too, past slots) for one forward.

        Without a cache each layer gets a ``PrefixPast``; with one, the prefix is
        written into its first P slots when it is empty.
        """
        if cache is None:
            caches = [PrefixPast(k, v) for k, v in self.key_values(batch)]
            past = self.length
        else:
            if cache.length == 0:
                for layer, (k, v) in zip(cache.layers, self.key_values(batch)):
                    layer.append("k", k, 0)
                    layer.append("v", v, 0)
                cache.advance(self.length)
            caches, past = cache.layers, cache.length
        return caches, extend_mask(attention_mask, self.length), past

    def extra_repr(self) -> str:
        projection = f", projection_hidden={self.projection_hidden}" if self.projection_hidden else ""
        return f"length={self.length}, layers={self.n_layers}, kv_heads={self.n_kv_heads}, head_dim={self.head_dim}{projection}"


class PrefixPast(LayerCache):
    """A layer's "cache" when there is none: the prefix, with the new keys/values concatenated after it."""

    def __init__(self, key: torch.Tensor, value: torch.Tensor):
        super().__init__(max_len=key.shape[-2])
        self.prefix = {"k": key, "v": value}

    def append(self, name: str, x: torch.Tensor, start: int, seq_dim: int = -2) -> torch.Tensor:
        return torch.cat((self.prefix[name].to(x.dtype), x), dim=seq_dim)


def extend_mask(attention_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Prepend ``length`` visible key slots to a padding (``[b, kv]``) or boolean (``[b, (1,) q, kv]``) mask."""
    if attention_mask is None:
        return None
    shape = (*attention_mask.shape[:-1], length)
    visible = torch.ones(shape, dtype=attention_mask.dtype, device=attention_mask.device)
    return torch.cat((visible, attention_mask), dim=-1)
