"""Text generation and multi-turn chat over a model and its tokenizer, streamed as it decodes.

    reply = generate_text(model, tok, tok.encode("Once"), 40, on_text=print_piece)
    chat = Chat(model, tok)
    chat.send("你好")          # renders the history with the chat template, decodes until end of turn
    chat.send("And then?")     # the whole conversation so far is the prompt

Each answer stops at one of ``tokenizer.stop_ids`` (eos, generation_config.json's
eos ids, the template's end-of-turn token such as ``<|im_end|>`` or
``<|eot_id|>``), which is not part of the answer's text. The answer joins the
history as text, decoded without special tokens, and the next prompt is the
template rendered again over the whole history - what a transformers user does
with ``apply_chat_template`` and ``generate``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from ..errors import InputError
from ..generate import DECODE_SCHEMES, generate
from .tokenizer import Tokenizer


@dataclass(frozen=True)
class Reply:
    """One decoded continuation: its ids (the stop token included, if one was met) and its text (without it)."""

    ids: list[int]
    text: str
    stopped: bool
    """True when a stop token ended it, False when it ran out of ``max_new_tokens``."""


def generate_text(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    prompt_ids: list[int],
    max_new_tokens: int,
    *,
    stop_ids: Iterable[int] = (),
    on_text: Callable[[str], None] | None = None,
    **sampling,
) -> Reply:
    """Continue ``prompt_ids``, handing each newly complete piece of text to ``on_text`` as it decodes.

    sampling: ``temperature``, ``top_k``, ``top_p``, ``generator`` as in ``archzoo.generate``."""
    stop = frozenset(int(i) for i in stop_ids)
    stream = tokenizer.stream_decoder(skip_special_tokens=True)
    met_stop = False

    def on_token(token: torch.Tensor) -> bool:
        nonlocal met_stop
        token_id = int(token[0])
        if token_id in stop:
            met_stop = True
            return True
        piece = stream.push(token_id)
        if piece and on_text is not None:
            on_text(piece)
        return False

    ids = DECODE_SCHEMES[model.config.position.kind].complete_prompt(list(prompt_ids), model.config)
    new = generate(model, torch.tensor([ids]), max_new_tokens, on_token=on_token, **sampling)[0].tolist()
    rest = stream.finish()
    if rest and on_text is not None:
        on_text(rest)
    text_ids = new[:-1] if met_stop else new
    return Reply(ids=new, text=tokenizer.decode(text_ids, skip_special_tokens=True), stopped=met_stop)


@dataclass
class Chat:
    """A conversation with a model: ``send(text)`` adds a user turn and returns the model's answer."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    max_new_tokens: int = 256
    system: str | None = None
    sampling: dict = field(default_factory=dict)
    messages: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if self.tokenizer.chat_template is None:
            raise InputError(
                f"{self.tokenizer.folder}: no chat template (tokenizer_config.json has no chat_template, and a "
                f"{self.tokenizer.format} vocabulary has no chat format of its own), so there is no chat prompt to build"
            )
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.messages = [{"role": "system", "content": self.system}] if self.system else []

    def prompt_ids(self) -> list[int]:
        """The ids of the history rendered with the template, ending in the assistant's opening."""
        return self.tokenizer.encode_chat(self.messages, add_generation_prompt=True)

    def send(self, text: str, on_text: Callable[[str], None] | None = None) -> str:
        """Add ``text`` as the user's turn, decode the answer (streamed to ``on_text``) and keep both."""
        self.messages.append({"role": "user", "content": text})
        try:
            reply = generate_text(
                self.model, self.tokenizer, self.prompt_ids(), self.max_new_tokens,
                stop_ids=self.tokenizer.stop_ids, on_text=on_text, **self.sampling,
            )  # fmt: skip
        except BaseException:
            self.messages.pop()
            raise
        self.messages.append({"role": "assistant", "content": reply.text})
        return reply.text
