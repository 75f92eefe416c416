"""The pieces of the training loop follow their definitions: schedule, loss, data windows, splits, id files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from archzoo.errors import InputError
from archzoo.train import TrainSettings, WindowSampler, learning_rate, next_token_loss
from archzoo.train.data import ByteTokenizer, encode_documents, fixed_windows, read_ids, read_text, split


def test_next_token_loss_is_mean_negative_log_likelihood():
    logits = torch.randn(2, 5, 7)
    targets = torch.randint(0, 7, (2, 5))
    by_hand = -torch.stack([F.log_softmax(logits[b, t], -1)[targets[b, t]] for b in range(2) for t in range(5)]).mean()
    # float32 mean of 10 log-probabilities of size ~2: rounding ~10 * 6e-8 * 2
    assert torch.allclose(next_token_loss(logits, targets), by_hand, atol=1e-5)


def test_schedule_warms_up_linearly_then_decays_by_a_cosine_to_the_floor():
    steps, peak, warmup, floor = 111, 2.0, 10, 0.1  # decay over steps 10..110: 100 steps
    assert [learning_rate(t, steps, peak, warmup, floor) for t in (0, 4, 9)] == [0.2, 1.0, 2.0]
    assert learning_rate(10, steps, peak, warmup, floor) == peak  # cos(0) = 1
    # halfway through the decay, cos(pi / 2) = 0: the mean of peak and floor
    assert math.isclose(learning_rate(10 + 50, steps, peak, warmup, floor), peak * (floor + (1 - floor) / 2))
    assert math.isclose(learning_rate(steps - 1, steps, peak, warmup, floor), peak * floor)
    decay = [learning_rate(t, steps, peak, warmup, floor) for t in range(warmup, steps)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_windows_cover_each_epoch_once_without_overlap():
    ids = torch.arange(1000)
    sampler = WindowSampler(ids, seq_len=10, seed=3)
    first = sampler._starts
    windows = sampler.next_batch(len(first))
    assert torch.equal(windows[:, 1:] - windows[:, :-1], torch.ones(len(first), 10, dtype=torch.long))
    starts = sorted(windows[:, 0].tolist())
    assert all(b - a == 10 for a, b in zip(starts, starts[1:]))  # stride seq_len: targets never repeat
    assert sampler.state() == {"epoch": 0, "index": len(first)}
    sampler.next_batch(1)
    assert sampler.epoch == 1 and not torch.equal(sampler._starts, first)  # a new order in epoch 1


def test_sampler_state_continues_the_same_sequence():
    ids = torch.arange(500)
    a = WindowSampler(ids, 16, seed=1)
    straight = [a.next_batch(7) for _ in range(8)]  # crosses epoch boundaries (30 windows per epoch)
    b = WindowSampler(ids, 16, seed=1)
    resumed = [b.next_batch(7) for _ in range(3)]
    c = WindowSampler(ids, 16, seed=1)
    c.load_state(b.state())
    resumed += [c.next_batch(7) for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(straight, resumed))


def test_split_holds_out_the_tail_and_names_the_problem():
    ids = torch.arange(100)
    parts = split(ids, 0.2, 10, "--text x")
    assert torch.equal(parts.train, ids[:80]) and torch.equal(parts.val, ids[80:])
    with pytest.raises(InputError, match="validation tail"):
        split(ids, 0.05, 10, "--text x")
    with pytest.raises(InputError, match="--seq-len"):
        split(ids, 0.0, 200, "--text x")


def test_fixed_windows_are_consecutive():
    w = fixed_windows(torch.arange(35), 10)
    assert w.tolist() == [list(range(0, 11)), list(range(10, 21)), list(range(20, 31))]


def test_id_files_of_every_format_read_the_same_stream(tmp_path):
    stream = torch.tensor([5, 0, 65535, 17, 3])
    np.save(tmp_path / "a.npy", stream.numpy().astype(np.int32))
    torch.save(stream, tmp_path / "a.pt")
    (tmp_path / "a.bin").write_bytes(stream.numpy().astype("<u2").tobytes())
    for name in ("a.npy", "a.pt", "a.bin"):
        assert read_ids(tmp_path / name).tolist() == stream.tolist()
    (tmp_path / "bad.bin").write_bytes(b"abc")
    with pytest.raises(InputError, match="bad.bin.*odd"):
        read_ids(tmp_path / "bad.bin")
    with pytest.raises(InputError, match="a.txt.*suffix"):
        (tmp_path / "a.txt").write_text("x")
        read_ids(tmp_path / "a.txt")


def test_a_folder_of_texts_is_read_in_path_order_and_joined_by_a_blank_line(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "skip.md").write_text("not text")
    ids = encode_documents(read_text(tmp_path), ByteTokenizer())
    assert bytes(ids.tolist()) == b"first\n\nsecond"
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(InputError, match="c.txt: not UTF-8"):
        read_text(tmp_path)


def test_settings_name_the_field_out_of_range():
    for bad, field in ((dict(steps=0), "steps"), (dict(lr=float("nan")), "lr"), (dict(precision="fp8"), "precision"),
                       (dict(val_fraction=1.0), "val_fraction"), (dict(batch=2.5), "batch")):
        with pytest.raises(InputError, match=field):
            TrainSettings(**bad).check()


def test_loss_plot_leaves_the_callers_matplotlib_backend_alone(tmp_path):
    # it once called matplotlib.use("Agg"): a notebook that trained showed none of its later figures
    import matplotlib

    from archzoo.train.plot import plot_losses

    matplotlib.use("svg")
    records = [{"tokens": 10 * i, "loss": 3.0 - 0.1 * i} for i in range(1, 5)] + [{"tokens": 50, "loss": 2.5, "val_loss": 2.6}]
    path = plot_losses(records, tmp_path / "loss.png", "t")
    assert matplotlib.get_backend() == "svg"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_default_corpus_is_public_and_is_what_train_reads_without_text():
    import archzoo.train
    from archzoo.train.run import DEFAULT_CORPUS

    assert archzoo.train.DEFAULT_CORPUS == DEFAULT_CORPUS and DEFAULT_CORPUS.is_file()
    assert DEFAULT_CORPUS.read_text(encoding="utf-8").startswith("First Citizen:")
