"""Text in and out: tokenizers of checkpoint folders, chat templates, streaming decode.

    tok = archzoo.load_tokenizer("dir/")     # tokenizer.json, tokenizer.model, qwen.tiktoken or ice_text.model
    ids = tok.encode("你好, world")
    tok.decode(ids)
    tok.apply_chat_template([{"role": "user", "content": "Hi"}])

Needs the optional extra: ``pip install 'archzoo[text]'``.
"""

from .chat import CHAT_FORMATS, ChatFormat, ChatTemplate
from .load import VOCAB_FILES, find_vocab_file, load_tokenizer
from .optional import MissingTextExtra
from .stream import StreamDecoder
from .tokenizer import TokenBatch, Tokenizer

__all__ = [
    "CHAT_FORMATS",
    "ChatFormat",
    "ChatTemplate",
    "MissingTextExtra",
    "StreamDecoder",
    "TokenBatch",
    "Tokenizer",
    "VOCAB_FILES",
    "find_vocab_file",
    "load_tokenizer",
]
