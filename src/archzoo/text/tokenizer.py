"""The one tokenizer interface over every vocabulary format archzoo reads.

    ids  = tok.encode("Hello")              # list[int], with the format's bos/eos rules
    text = tok.decode(ids)                  # str
    batch = tok.encode_batch(["a", "bcd"])  # left-padded ids + attention mask, ready for generate
    prompt = tok.apply_chat_template(messages, add_generation_prompt=True)

A format (``hf_json``, ``sentencepiece_model``, ``tiktoken_bpe``, ``ice_text``)
implements ``_encode`` and ``_decode``; everything else (special token roles,
batching, chat templates, stop tokens, streaming) is written once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .chat import CHAT_FORMATS, ChatTemplate, end_of_turn_ids
from .settings import TokenSettings
from .stream import StreamDecoder

# transformers' clean_up_tokenization: the spaces a word-level detokenizer left before punctuation
_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))  # fmt: skip


@dataclass(frozen=True)
class TokenBatch:
    """Prompts of different lengths, left-padded: ``input_ids`` and ``attention_mask`` (1 = real), ``[batch, seq]``."""

    input_ids: object  # torch.Tensor (torch is imported only when a batch is made)
    attention_mask: object


class Tokenizer:
    """Text <-> token ids for one folder; see the module docstring. Made by ``archzoo.load_tokenizer``."""

    format: str = ""
    """The vocabulary format, e.g. ``tokenizer.json``; shown by the CLI."""
    chat_format: str | None = None
    """The name in ``chat.CHAT_FORMATS`` of the format's own chat prompt, used where the folder has no chat_template."""

    def __init__(self, folder: Path, vocab_file: Path, settings: TokenSettings, ids: dict[str, int]):
        """ids: role (``bos``, ``eos``, ``pad``, ``unk``) -> id, as the format resolved them."""
        self.folder = folder
        self.vocab_file = vocab_file
        self.settings = settings
        self._ids = ids
        named = CHAT_FORMATS[self.chat_format] if settings.chat_template is None and self.chat_format else None
        template = settings.chat_template or (named.template if named else None)
        self.chat_template = ChatTemplate(template, self.template_tokens(), f"{folder}") if template else None
        self._chat_adds_special_tokens = bool(named and named.add_special_tokens)

    # -- to implement per format -------------------------------------------------------------------
    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        raise NotImplementedError

    def _decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        raise NotImplementedError

    def token_to_id(self, token: str) -> int | None:
        """The id of a token given as its text (a special token such as ``<|im_end|>``), or None."""
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce (the largest id + 1)."""
        raise NotImplementedError

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids that ``decode(..., skip_special_tokens=True)`` leaves out."""
        raise NotImplementedError

    # -- written once ------------------------------------------------------------------------------
    @property
    def bos_id(self) -> int | None:
        return self._ids.get("bos")

    @property
    def eos_id(self) -> int | None:
        return self._ids.get("eos")

    @property
    def pad_id(self) -> int | None:
        return self._ids.get("pad")

    @property
    def unk_id(self) -> int | None:
        return self._ids.get("unk")

    def template_tokens(self) -> dict[str, str]:
        """The special tokens a chat template sees as variables (``bos_token``, ``eos_token``, ...)."""
        return {f"{role}_token": text for role, text in self.settings.tokens.items()}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``; ``add_special_tokens`` adds what the format adds around a text (e.g. bos)."""
        if not isinstance(text, str):
            raise InputError(f"encode: text must be a str, got {type(text).__name__}")
        return self._encode(text, add_special_tokens)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """The text of ``ids`` (a list of ints or a 1-D tensor); special tokens are kept unless skipped."""
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise InputError(
                f"decode: ids {bad[:5]} are outside the vocabulary [0, {self.vocab_size}) of {self.folder}"
            )
        text = self._decode(ids, skip_special_tokens)
        if self.settings.clean_up_spaces:
            for before, after in _CLEAN_UP:
                text = text.replace(before, after)
        return text

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> TokenBatch:
        """Encode several texts and left-pad them to one length, as ``generate`` expects.

        Padding uses ``pad_id``, else ``eos_id``, else 0: the attention mask hides it, so its value
        only has to be a valid id."""
        import torch

        if isinstance(texts, str) or not texts:
            raise InputError("encode_batch: texts must be a non-empty list of strings")
        rows = [self.encode(t, add_special_tokens) for t in texts]
        if not all(rows):
            raise InputError("encode_batch: a text encodes to no tokens at all; generate needs at least one")
        pad = next((i for i in (self.pad_id, self.eos_id) if i is not None), 0)
        width = max(len(r) for r in rows)
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        return TokenBatch(ids, mask)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation rendered as the model was trained to read it (the folder's chat_template).

        messages: ``[{"role": "user", "content": "..."}, ...]``. Raises InputError when the folder
        has neither a chat_template nor a named chat format of its own."""
        if self.chat_template is None:
            raise InputError(f"{self.folder}: no chat_template in tokenizer_config.json (or chat_template.jinja)")
        return self.chat_template.render(messages, add_generation_prompt)

    def encode_chat(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered conversation. Like transformers, nothing is added on top of what a folder's
        template writes; a named format says itself (``ChatFormat.add_special_tokens``)."""
        text = self.apply_chat_template(messages, add_generation_prompt)
        return self.encode(text, add_special_tokens=self._chat_adds_special_tokens)

    @property
    def stop_ids(self) -> frozenset[int]:
        """Tokens that end an answer: eos, generation_config.json's eos ids and the template's end-of-turn token."""
        ids = set(self.settings.stop_ids)
        if self.eos_id is not None:
            ids.add(self.eos_id)
        if self.chat_template is not None:
            ids |= end_of_turn_ids(self)
        return frozenset(ids)

    def stream_decoder(self, skip_special_tokens: bool = True) -> StreamDecoder:
        """Incremental decoding of generated ids: text appears as soon as its characters are whole."""
        return StreamDecoder(lambda ids: self.decode(ids, skip_special_tokens))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.format} from {self.folder}: {self.vocab_size} ids>"
