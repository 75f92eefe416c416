"""ChatGLM-6B's ``ice_text.model``: SentencePiece behind 20,000 image-token ids, with whitespace pieces.

From ChatGLM-6B's ``tokenization_chatglm.py`` (``SPTokenizer``):

* ids 0..19,999 are image tokens; text piece ``p`` has id ``p + 20000``
  (``num_image_tokens``), so the vocabulary is 20,000 + the model's pieces;
* before SentencePiece sees a text, ``\\n`` becomes the piece ``<n>``, a tab
  ``<|tab|>`` and each run of 2..80 spaces ``<|blank_N|>`` (longest first);
  decoding undoes it and drops image ids;
* ``[MASK]``, ``[gMASK]``, ``[sMASK]``, ``<sop>``, ``<eop>``, ... are pieces of the
  model; bos is ``<sop>``, eos ``<eop>``, and an encoded text ends in ``[gMASK] <sop>``
  (``build_inputs_with_special_tokens``), where generation starts.

Its chat prompt is the ``chatglm-6b`` format of ``chat.CHAT_FORMATS``. Not reproduced:
the 4.27-era transformers base class ChatGLM-6B ran on stripped the spaces next to a
special token written inside a text; here they stay (see docs/tokenizers.md).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import CheckpointError
from .sentencepiece_model import SentencePieceTokenizer, load_sentencepiece
from .settings import TokenSettings

IMAGE_TOKENS = 20000
MAX_BLANK = 80
GLM_SPECIALS = ("[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>")
DEFAULT_TOKENS = {"bos": "<sop>", "eos": "<eop>", "pad": "<pad>", "unk": "<unk>"}


def encode_whitespace(text: str) -> str:
    text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
    for n in range(MAX_BLANK, 1, -1):
        text = text.replace(" " * n, f"<|blank_{n}|>")
    return text


def decode_whitespace(text: str) -> str:
    text = text.replace("<n>", "\n").replace("<|tab|>", "\t")
    for n in range(2, MAX_BLANK + 1):
        text = text.replace(f"<|blank_{n}|>", " " * n)
    return text


class IceTextTokenizer(SentencePieceTokenizer):
    format = "ChatGLM-6B ice_text.model"
    offset = IMAGE_TOKENS
    chat_format = "chatglm-6b"

    def __init__(self, folder: Path, vocab_file: Path, settings: TokenSettings):
        sp = load_sentencepiece(vocab_file)
        known = {sp.IdToPiece(i) for i in range(sp.GetPieceSize())}
        defaults = {role: text for role, text in DEFAULT_TOKENS.items() if text in known}
        extra = tuple(t for t in GLM_SPECIALS if t in known) + settings.extra_special
        settings = replace(settings, tokens={**defaults, **settings.tokens}, extra_special=extra)
        super().__init__(folder, vocab_file, settings)
        self.add_bos = False  # the prompt ends in [gMASK] <sop> instead (see _encode)
        self.gmask_id = self.token_to_id("[gMASK]")
        if self.gmask_id is None or self.bos_id is None:
            raise CheckpointError(f"{vocab_file}: a ChatGLM-6B vocabulary needs the pieces [gMASK] and <sop> (bos)")

    def _encode_run(self, text: str) -> list[int]:
        return super()._encode_run(encode_whitespace(text))

    def _decode_run(self, ids: list[int]) -> str:
        return decode_whitespace(super()._decode_run([i for i in ids if i >= self.offset]))

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        ids = super()._encode(text, add_special_tokens=False)
        if add_special_tokens:
            ids += [self.gmask_id, self.bos_id]
        return ids
