"""Token streams for training: from text (a file, or a folder of ``*.txt`` files) or from token ids,
split into a training part and a held-out validation tail, and read in windows.

Token-id files (``--ids``), one flat stream each:

    .npy   a 1-D integer array (numpy's format; needs numpy)
    .pt    a 1-D integer tensor written by ``torch.save`` (read with ``weights_only=True``)
    .bin   raw little-endian uint16 values, nanoGPT's format (vocabularies up to 65,536)

Text is encoded by the model folder's tokenizer when it has one (``archzoo.load_tokenizer``),
otherwise as UTF-8 bytes (ids 0-255, for configs whose vocabulary has at least 256 entries).
A folder's files are read in sorted path order and joined by the tokenizer's end-of-sequence
id (bytes: a blank line), so no window silently runs one document into the next unmarked.

The validation split is the stream's last ``val_fraction`` of tokens (a contiguous tail, so no
window of it overlaps training text). Training reads non-overlapping windows of
``seq_len + 1`` tokens (inputs and next-token targets) at stride ``seq_len``, every epoch in a
new random order from a new random offset: each token is seen once per epoch, and the
position in the data is two integers (epoch, index) that a checkpoint stores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from ..text import find_vocab_file, load_tokenizer

BYTE_VOCAB = 256


class ByteTokenizer:
    """UTF-8 bytes as token ids 0-255 (no special tokens)."""

    vocab_size = BYTE_VOCAB
    bos_id = eos_id = pad_id = None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < BYTE_VOCAB).decode("utf-8", errors="replace")


def tokenizer_for(vocab_size: int, folder: str | Path | None = None):
    """The folder's tokenizer if it has one (``archzoo.load_tokenizer``), else bytes;
    ``InputError`` if neither fits ``vocab_size``."""
    if folder is not None:

        if find_vocab_file(folder) is not None:
            tokenizer = load_tokenizer(folder)
            if tokenizer.vocab_size > vocab_size:
                raise InputError(
                    f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens, more than the model's vocab_size {vocab_size}"
                )
            return tokenizer
    if vocab_size < BYTE_VOCAB:
        raise InputError(
            f"the model's vocabulary has {vocab_size} tokens, too few for UTF-8 bytes (needs >= {BYTE_VOCAB}) "
            "and no tokenizer was found; train on token ids (--ids) instead"
        )
    return ByteTokenizer()


def read_text(path: str | Path) -> list[str]:
    """The documents of a text file or of every ``*.txt`` file below a folder (sorted by path)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise InputError(f"--text {path}: the folder holds no *.txt file")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"--text {path}: no such file or folder")
    documents = []
    for file in files:
        try:
            documents.append(file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise InputError(f"{file}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return documents


def encode_documents(documents: list[str], tokenizer) -> torch.Tensor:
    """One stream: the documents' ids joined by the end-of-sequence id (bytes: a blank line)."""
    ids: list[int] = []
    for index, text in enumerate(documents):
        if index:
            ids.extend([tokenizer.eos_id] if tokenizer.eos_id is not None else tokenizer.encode("\n\n"))
        ids.extend(tokenizer.encode(text))
    return torch.tensor(ids, dtype=torch.long)


def read_ids(path: str | Path) -> torch.Tensor:
    """A 1-D stream of token ids from a .npy, .pt or .bin file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--ids {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            import numpy as np
        except ImportError:
            raise InputError(f"--ids {path}: reading .npy files needs numpy (pip install numpy)") from None
        array = np.load(path, allow_pickle=False)
        if not np.issubdtype(array.dtype, np.integer):
            raise InputError(f"--ids {path}: expected integer token ids, got dtype {array.dtype}")
        ids = torch.from_numpy(array.astype(np.int64))
    elif suffix == ".pt":
        ids = torch.load(path, weights_only=True)
        if not isinstance(ids, torch.Tensor) or ids.is_floating_point() or ids.is_complex():
            raise InputError(f"--ids {path}: expected a tensor of integer token ids")
        ids = ids.long()
    elif suffix == ".bin":
        data = path.read_bytes()
        if len(data) % 2:
            raise InputError(f"--ids {path}: a .bin file holds uint16 values, but its size ({len(data)} bytes) is odd")
        ids = torch.frombuffer(bytearray(data), dtype=torch.uint16).long() if data else torch.zeros(0, dtype=torch.long)
    else:
        raise InputError(f"--ids {path}: unknown suffix {suffix!r}; expected .npy, .pt or .bin")
    if ids.dim() != 1:
        raise InputError(f"--ids {path}: expected a 1-D stream of ids, got shape {tuple(ids.shape)}")
    return ids


def check_ids(ids: torch.Tensor, vocab_size: int, source: str) -> torch.Tensor:
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise InputError(f"{source}: token ids span [{int(ids.min())}, {int(ids.max())}], outside the vocabulary [0, {vocab_size})")
    return ids


def fingerprint(ids: torch.Tensor) -> str:
    """sha256 of the stream, so a resumed run can tell that its data changed."""
    return hashlib.sha256(ids.to(torch.int64).numpy().tobytes() if ids.numel() else b"").hexdigest()


@dataclass
class Split:
    train: torch.Tensor
    val: torch.Tensor


def split(ids: torch.Tensor, val_fraction: float, seq_len: int, source: str) -> Split:
    """Training head and validation tail; ``InputError`` if either is too short for one window."""
    n_val = round(ids.numel() * val_fraction)
    train, val = ids[: ids.numel() - n_val], ids[ids.numel() - n_val :]
    need = seq_len + 1
    if train.numel() < need:
        raise InputError(
            f"{source}: {ids.numel():,} tokens leave {train.numel():,} for training, fewer than one window of "
            f"seq_len + 1 = {need}; use more text or a shorter --seq-len"
        )
    if val_fraction > 0 and val.numel() < need:
        raise InputError(
            f"{source}: the validation tail (--val-fraction {val_fraction}) has {val.numel():,} tokens, fewer than "
            f"one window of seq_len + 1 = {need}; use more text, a larger --val-fraction, or --val-fraction 0"
        )
    return Split(train, val)


def fixed_windows(ids: torch.Tensor, seq_len: int, limit: int | None = None) -> torch.Tensor:
    """Consecutive non-overlapping windows ``[n, seq_len + 1]`` from the start of ``ids`` (at most ``limit``)."""
    n = (ids.numel() - 1) // seq_len
    if limit is not None:
        n = min(n, limit)
    starts = torch.arange(n) * seq_len
    return ids[starts[:, None] + torch.arange(seq_len + 1)]


class WindowSampler:
    """Training windows in a new random order every epoch (see the module docstring).

    ``state()`` / ``load_state()`` carry the position (epoch, index) across a resume.
    """

    def __init__(self, ids: torch.Tensor, seq_len: int, seed: int):
        if ids.numel() < seq_len + 1:
            raise InputError(f"training data: {ids.numel()} tokens, fewer than seq_len + 1 = {seq_len + 1}")
        self.ids, self.seq_len, self.seed = ids, seq_len, seed
        self.epoch, self.index = 0, 0
        self._starts = self._epoch_starts(0)

    def _epoch_starts(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        slack = min(self.seq_len, self.ids.numel() - self.seq_len - 1)
        offset = int(torch.randint(0, slack + 1, (1,), generator=generator))
        n = (self.ids.numel() - 1 - offset) // self.seq_len
        return offset + self.seq_len * torch.randperm(n, generator=generator)

    def next_batch(self, batch: int) -> torch.Tensor:
        """``[batch, seq_len + 1]`` windows; an epoch boundary may fall inside a batch."""
        starts = []
        while len(starts) < batch:
            if self.index == len(self._starts):
                self.epoch, self.index = self.epoch + 1, 0
                self._starts = self._epoch_starts(self.epoch)
            take = min(batch - len(starts), len(self._starts) - self.index)
            starts.extend(self._starts[self.index : self.index + take].tolist())
            self.index += take
        return self.ids[torch.tensor(starts)[:, None] + torch.arange(self.seq_len + 1)]

    def state(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._starts = self._epoch_starts(self.epoch)
