"""Tokenizers trained here on a tiny corpus (no downloads), one folder per vocabulary format
(``build_folders``; conftest.py builds them once per test session). Each folder is what the real checkpoints ship: the vocabulary
file plus tokenizer_config.json; the texts in ``PARITY_TEXTS`` exercise Chinese, emoji,
runs of spaces, tabs and newlines, and special tokens inside the text."""

from __future__ import annotations

import base64
import json
from pathlib import Path

TRAIN = [
    "Hello world, this is a tiny corpus for tiny tokenizers.",
    "The quick brown fox jumps over the lazy dog. Isn't it?",
    "你好，世界！今天天气很好。我们一起学习语言模型。",
    "模型的参数量是七十亿。Transformer 的注意力机制。",
    "emoji: 😀 🎉 👍🏽 and ❤️ are fine",
    "code:\n    def f(x):\n\treturn x + 1\n\n",
    "numbers 12345 and 3.14159, dates 2023-10-01.",
    "spaces    between     words  and\ttabs\t\there",
]
PARITY_TEXTS = [
    "Hello world",
    " leading space and trailing space ",
    "Hello   world,\tthe    quick\n\n\nbrown fox",
    "你好，世界！今天天气很好。",
    "模型 and Transformer 混合 text",
    "emoji 😀🎉👍🏽❤️ in a row",
    "unseen: Ωμέγα ñandú 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "   ",
    "\n",
    "line one\nline two\r\nline three",
    "numbers 1234567890",
]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
WITH_SPECIALS = ["<s>Hello</s>", "a<|im_start|>user\n你好<|im_end|>b", "<|im_end|><|im_end|>x"]


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def hf_bpe(vocab_size: int = 400):
    """A byte-level BPE (GPT-2 style) trained with the tokenizers library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAIN * 3, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return tok


def hf_unigram(vocab_size: int = 300):
    """A Unigram model with a Metaspace pre-tokenizer (T5 / ALBERT style), trained with the tokenizers library."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>",
                                      show_progress=False)  # fmt: skip
    tok.train_from_iterator(TRAIN * 3, trainer)
    return tok


def tokenizer_json_folder(root: Path, name: str, tok, chat_template: str | None = CHATML) -> Path:
    folder = root / name
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
              "pad_token": "<pad>", "unk_token": "<unk>", "clean_up_tokenization_spaces": False}  # fmt: skip
    if chat_template:
        config["chat_template"] = chat_template
    write_json(folder / "tokenizer_config.json", config)
    return folder


def train_sentencepiece(prefix: Path, model_type: str, vocab_size: int, **options) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAIN * 3), model_prefix=str(prefix), vocab_size=vocab_size, model_type=model_type,
        **{"character_coverage": 1.0, "byte_fallback": True, "unk_id": 0, "bos_id": 1, "eos_id": 2, "pad_id": -1,
           "split_digits": True, **options},
        allow_whitespace_only_pieces=True, remove_extra_whitespaces=False, minloglevel=2,
        hard_vocab_limit=model_type == "bpe",
    )  # fmt: skip
    prefix.with_suffix(".vocab").unlink()
    return prefix.with_suffix(".model")


def tiktoken_ranks(tok) -> dict[bytes, int]:
    """A trained byte-level BPE written as tiktoken ranks: the 256 bytes first, then every merge's
    result in merge order, so tiktoken's lowest-rank-first merging repeats the BPE's merges."""
    from tokenizers.pre_tokenizers import ByteLevel

    unicode_to_byte = {}
    for b, ch in zip(range(256), _bytes_to_unicode()):
        unicode_to_byte[ch] = b
    assert len(ByteLevel.alphabet()) == 256
    ranks = {bytes([b]): b for b in range(256)}
    merges = json.loads(tok.to_str())["model"]["merges"]
    for merge in merges:
        left, right = merge if isinstance(merge, list) else merge.split(" ")
        token = bytes(unicode_to_byte[c] for c in left + right)
        ranks.setdefault(token, len(ranks))
    return ranks


def _bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character table (byte b is shown as chars[b])."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


def qwen_style_bpe():
    """A byte-level BPE whose pre-tokenizer is Qwen v1's regex (the tokenizers library's Split), trained here."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=420, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)  # fmt: skip
    tok.train_from_iterator(TRAIN * 3, trainer)
    return tok


def build_folders(root: Path) -> dict[str, Path]:
    """Format name -> a tokenizer folder under ``root``."""
    out = {
        "bpe-json": tokenizer_json_folder(root, "bpe-json", hf_bpe()),
        "unigram-json": tokenizer_json_folder(root, "unigram-json", hf_unigram(), chat_template=None),
    }
    for model_type, size in (("bpe", 400), ("unigram", 400)):
        folder = root / f"sp-{model_type}"
        folder.mkdir()
        train_sentencepiece(
            folder / "tokenizer",
            model_type,
            size,
            normalization_rule_name="identity",
            user_defined_symbols=["<|im_start|>", "<|im_end|>"],
        )  # LLaMA's: no NFKC
        write_json(folder / "tokenizer_config.json", {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>",
                   "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True, "add_eos_token": False,
                   "chat_template": CHATML, "added_tokens_decoder": {
                       "3": {"content": "<|im_start|>", "special": True}, "4": {"content": "<|im_end|>", "special": True}}})  # fmt: skip
        out[f"sp-{model_type}"] = folder

    folder = root / "qwen"
    folder.mkdir()
    bpe = qwen_style_bpe()
    lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in tiktoken_ranks(bpe).items()]
    (folder / "qwen.tiktoken").write_text("\n".join(lines) + "\n")
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "QWenTokenizer", "model_max_length": 8192})
    bpe.save(str(root / "qwen-source-bpe.json"))
    out["qwen"] = folder

    folder = root / "chatglm"
    folder.mkdir()
    glm_symbols = ["<n>", "<|tab|>", *(f"<|blank_{n}|>" for n in range(2, 81)),
                   "[MASK]", "[gMASK]", "[sMASK]", "<unused_0>", "<sop>", "<eop>", "<ENC>", "<dBLOCK>"]  # fmt: skip
    model = train_sentencepiece(folder / "tmp", "unigram", 500, user_defined_symbols=glm_symbols,
                                pad_id=3, pad_piece="<pad>")  # fmt: skip
    model.rename(folder / "ice_text.model")
    write_json(folder / "tokenizer_config.json", {"tokenizer_class": "ChatGLMTokenizer", "bos_token": "<sop>",
               "eos_token": "<eop>", "gmask_token": "[gMASK]", "mask_token": "[MASK]", "pad_token": "<pad>",
               "unk_token": "<unk>", "num_image_tokens": 20000})  # fmt: skip
    out["chatglm"] = folder
    return out
