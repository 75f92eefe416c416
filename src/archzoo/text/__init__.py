"""Text in and out: tokenizers of checkpoint folders, chat templates, streaming decode.

    tok = archzoo.load_tokenizer("dir/")     # tokenizer.json, tokenizer.model, qwen.tiktoken or ice_text.model
    ids = tok.encode("你好, world")
    tok.decode(ids)
    tok.apply_chat_template([{"role": "user", "content": "Hi"}])
    archzoo.text.Chat(model, tok).send("你好")   # multi-turn chat, streamed, stops at the end-of-turn token

Needs the optional extra: ``pip install 'archzoo[text]'``.
"""

from .chat import CHAT_FORMATS, ChatFormat, ChatTemplate
from .load import VOCAB_FILES, find_vocab_file, load_tokenizer
from .optional import MissingTextExtra
from .session import Chat, Reply, generate_text
from .stream import StreamDecoder
from .tokenizer import TokenBatch, Tokenizer

__all__ = [
    "CHAT_FORMATS",
    "Chat",
    "ChatFormat",
    "ChatTemplate",
    "MissingTextExtra",
    "Reply",
    "StreamDecoder",
    "TokenBatch",
    "Tokenizer",
    "VOCAB_FILES",
    "find_vocab_file",
    "generate_text",
    "load_tokenizer",
]
