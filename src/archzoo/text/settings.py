"""What a tokenizer folder says besides its vocabulary: special tokens, chat template, stop tokens.

Read the way ``transformers`` reads them, offline:

* ``tokenizer_config.json``: ``bos_token`` / ``eos_token`` / ``pad_token`` /
  ``unk_token`` (a string or an ``{"content": ...}`` object), ``add_bos_token``
  / ``add_eos_token``, ``added_tokens_decoder`` (id -> token), the
  ``chat_template`` (a string, or a list of named templates) and
  ``clean_up_tokenization_spaces``;
* ``special_tokens_map.json`` fills the special tokens tokenizer_config.json leaves unset;
* ``chat_template.jinja`` (how transformers 5 saves a template) wins over the config's;
* ``generation_config.json``'s ``eos_token_id`` (an id or a list) adds stop tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CheckpointError

ROLES = ("bos", "eos", "pad", "unk")


def read_json(path: Path) -> dict:
    """A JSON object from ``path`` ({} when the file is absent); a broken file is a CheckpointError naming it."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def token_text(value, path: Path, key: str) -> str | None:
    """A special token as written in tokenizer_config.json: a string, ``{"content": ...}`` or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise CheckpointError(f"{path}: {key}: expected a string or an object with a 'content' string, got {value!r}")


@dataclass(frozen=True)
class TokenSettings:
    """The special tokens and the chat template of one tokenizer folder (all optional)."""

    tokens: dict[str, str] = field(default_factory=dict)
    """role (``bos``, ``eos``, ``pad``, ``unk``) -> token text."""
    add_bos: bool | None = None
    add_eos: bool | None = None
    added: dict[str, int] = field(default_factory=dict)
    """``added_tokens_decoder``: token text -> id (tokens matched whole before the vocabulary runs)."""
    extra_special: tuple[str, ...] = ()
    chat_template: str | None = None
    clean_up_spaces: bool = False
    stop_ids: tuple[int, ...] = ()
    """``generation_config.json``'s eos ids."""


def _chat_template(folder: Path, config: dict) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if template is None or isinstance(template, str):
        return template
    if isinstance(template, list):  # named templates: [{"name": "default", "template": "..."}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        if isinstance(named.get("default"), str):
            return named["default"]
    raise CheckpointError(
        f"{folder / 'tokenizer_config.json'}: chat_template: expected a string or a list with a 'default' template"
    )


def _stop_ids(folder: Path) -> tuple[int, ...]:
    path = folder / "generation_config.json"
    eos = read_json(path).get("eos_token_id")
    ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise CheckpointError(f"{path}: eos_token_id: expected a token id or a list of ids, got {eos!r}")
    return tuple(ids)


def read_settings(folder: Path) -> TokenSettings:
    """Everything ``TokenSettings`` holds, from the files of ``folder``."""
    config_path = folder / "tokenizer_config.json"
    config = read_json(config_path)
    special_path = folder / "special_tokens_map.json"
    special_map = read_json(special_path)
    tokens = {}
    for role in ROLES:
        key = f"{role}_token"
        text = token_text(config.get(key), config_path, key)
        if text is None:
            text = token_text(special_map.get(key), special_path, key)
        if text is not None:
            tokens[role] = text
    added = {}
    for token_id, entry in (config.get("added_tokens_decoder") or {}).items():
        text = token_text(entry, config_path, f"added_tokens_decoder.{token_id}")
        try:
            added[text] = int(token_id)
        except ValueError:
            raise CheckpointError(f"{config_path}: added_tokens_decoder: {token_id!r} is not a token id") from None
    extra = config.get("additional_special_tokens") or special_map.get("additional_special_tokens") or []
    extra_path = config_path if config.get("additional_special_tokens") else special_path
    return TokenSettings(
        tokens=tokens,
        add_bos=config.get("add_bos_token"),
        add_eos=config.get("add_eos_token"),
        added=added,
        extra_special=tuple(token_text(t, extra_path, "additional_special_tokens") for t in extra),
        chat_template=_chat_template(folder, config),
        clean_up_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        stop_ids=_stop_ids(folder),
    )
