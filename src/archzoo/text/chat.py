"""Chat templates: a conversation rendered into the prompt text the model was trained on.

A folder's ``chat_template`` is Jinja2, rendered the way ``transformers``
renders it (``apply_chat_template``): an immutable sandboxed environment with
``trim_blocks`` and ``lstrip_blocks``, the ``loopcontrols`` extension, a
``tojson`` filter that keeps non-ASCII text, the globals ``raise_exception``
and ``strftime_now``, and the variables ``messages``,
``add_generation_prompt`` and the special tokens (``bos_token``, ``eos_token``, ...).

Formats from before chat templates existed are written as templates too, in
``CHAT_FORMATS``, and a vocabulary format names its own (ChatGLM-6B's
``[Round N]`` prompt, Qwen v1's ChatML): data, not a branch per family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from ..errors import InputError
from .optional import require


@dataclass(frozen=True)
class ChatFormat:
    """A named chat prompt: its template, and whether the rendered text is encoded with the
    vocabulary's own special tokens (ChatGLM-6B's ``chat()`` encodes it like any text, so it ends in
    ``[gMASK] <sop>``; folder templates write their special tokens themselves, as in transformers)."""

    template: str
    add_special_tokens: bool = False


CHAT_FORMATS = {
    # ChatGLM-6B's `chat()` (modeling_chatglm.py): the first question alone; with history,
    # rounds counted from 0 as "[Round i]\n问：{question}\n答：{answer}\n", the open round ending in "答：".
    "chatglm-6b": ChatFormat(
        "{% if messages | length == 1 and add_generation_prompt %}{{ messages[0]['content'] }}"
        "{% else %}{% set ns = namespace(round=0) %}"
        "{% for message in messages %}"
        "{% if message['role'] == 'user' %}[Round {{ ns.round }}]\n问：{{ message['content'] }}\n答："
        "{% elif message['role'] == 'assistant' %}{{ message['content'] }}\n{% set ns.round = ns.round + 1 %}"
        "{% else %}{{ raise_exception('ChatGLM-6B prompts have user and assistant turns only') }}{% endif %}"
        "{% endfor %}{% endif %}",
        add_special_tokens=True,
    ),
    # Qwen v1 chat (qwen_generation_utils.make_context, chat_format "chatml"), default system prompt included.
    "chatml": ChatFormat(
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
}
"""Named chat formats for vocabularies whose folders carry no chat_template."""


def _raise_exception(message: str):
    jinja2 = require("jinja2", "a chat template")
    raise jinja2.exceptions.TemplateError(message)


@cache
def _compile(template: str):
    jinja2 = require("jinja2", "a chat template")
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationBlock(Extension):
        """``{% generation %}...{% endgeneration %}`` (transformers marks assistant tokens with it): the body as is."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    env.filters["tojson"] = lambda x, ensure_ascii=False, indent=None, separators=None, sort_keys=False: json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class ChatTemplate:
    """One Jinja2 chat template with the special tokens it sees."""

    def __init__(self, template: str, tokens: dict[str, str], source: str):
        self.template = template
        self.tokens = tokens
        self.source = source

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The prompt text; a template's ``raise_exception`` (or a Jinja error) is an InputError naming the source."""
        if not isinstance(messages, list) or not messages:
            raise InputError("messages: must be a non-empty list of {'role': ..., 'content': ...} dicts")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InputError(f"messages[{i}]: must be a dict with a 'role' string and a 'content', got {message!r}")
        jinja2 = require("jinja2", "a chat template")
        try:
            compiled = _compile(self.template)
            return compiled.render(messages=messages, add_generation_prompt=add_generation_prompt, **self.tokens)
        except jinja2.TemplateError as err:
            raise InputError(f"{self.source}: chat template: {err}") from None


SENTINEL = "archzoo-end-of-turn-probe"


def end_of_turn_ids(tokenizer) -> set[int]:
    """The special token a template writes right after an assistant's answer (``<|im_end|>``, ``<|eot_id|>``,
    ``</s>``, ...): found by rendering a probe answer and encoding what follows it. Empty if none follows."""
    messages = [{"role": "user", "content": "?"}, {"role": "assistant", "content": SENTINEL}]
    try:
        text = tokenizer.chat_template.render(messages, add_generation_prompt=False)
    except InputError:  # a template that refuses this shape of conversation has no probe-able end of turn
        return set()
    tail = text.split(SENTINEL, 1)[-1].lstrip(" ") if SENTINEL in text else ""
    ids = tokenizer.encode(tail, add_special_tokens=False)[:1] if tail else []
    return {i for i in ids if i in tokenizer.special_ids}
