"""atomic_folder: all-or-nothing folder writes (the kill test over a real save is tests/models/test_save_kill.py)."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys

import pytest

from archzoo import atomic
from archzoo.atomic import atomic_folder, is_temporary, recover
from archzoo.errors import CheckpointError


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _siblings(folder):
    return sorted(p.name for p in folder.parent.iterdir() if p != folder)


def test_new_folder_appears_whole_with_the_users_umask(tmp_path):
    old_mask = os.umask(0o027)
    try:
        with atomic_folder(tmp_path / "run") as tmp:
            assert not (tmp_path / "run").exists()  # nothing visible until the commit
            (tmp / "a.txt").write_text("a")
            (tmp / "sub").mkdir()
            (tmp / "sub" / "b.txt").write_text("b")
            os.chmod(tmp / "a.txt", 0o600)  # as mkstemp and safetensors leave their files
    finally:
        os.umask(old_mask)
    run = tmp_path / "run"
    assert _files(run) == {"a.txt": "a", "sub/b.txt": "b"}
    assert stat.S_IMODE(os.stat(run / "a.txt").st_mode) == 0o640  # 0666 & ~0027
    assert stat.S_IMODE(os.stat(run).st_mode) == 0o750  # 0777 & ~0027
    assert stat.S_IMODE(os.stat(run / "sub").st_mode) == 0o750
    assert _siblings(run) == []


def test_existing_folder_needs_overwrite_and_is_replaced_whole(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_folder(target) as tmp:
        (tmp / "old_only.txt").write_text("old")
        (tmp / "shared.txt").write_text("old")
    with pytest.raises(CheckpointError, match=r"ckpt.*not empty.*overwrite"):
        with atomic_folder(target) as tmp:
            pytest.fail("must refuse before the body runs")
    with atomic_folder(target, overwrite=True) as tmp:
        (tmp / "shared.txt").write_text("new")
    assert _files(target) == {"shared.txt": "new"}  # no file of the old folder left beside the new one
    assert _siblings(target) == []


def test_empty_existing_folder_is_filled_without_overwrite(tmp_path):
    (tmp_path / "empty").mkdir()
    with atomic_folder(tmp_path / "empty") as tmp:
        (tmp / "x").write_text("x")
    assert _files(tmp_path / "empty") == {"x": "x"}


def test_an_exception_leaves_the_old_folder_untouched_and_no_temporary(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_folder(target) as tmp:
        (tmp / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target, overwrite=True) as tmp:
            (tmp / "a").write_text("new")
            raise RuntimeError("disk full")
    assert _files(target) == {"a": "old"}
    assert _siblings(target) == []


def test_a_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(CheckpointError, match="not a folder"):
        with atomic_folder(tmp_path / "f", overwrite=True):
            pass


def test_stale_temporaries_are_removed_but_a_live_writers_is_kept(tmp_path):
    target = tmp_path / "ckpt"
    stale = tmp_path / f".ckpt{atomic.TMP_TAG}dead"
    stale.mkdir()
    (stale / "model.safetensors").write_text("half")
    live = tmp_path / f".ckpt{atomic.TMP_TAG}live"
    live.mkdir()
    holder = subprocess.Popen(  # another process holding the writer's lock on its temporary
        [sys.executable, "-c", "import fcntl,os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); "
         "fcntl.flock(fd,fcntl.LOCK_EX); print('locked',flush=True); sys.stdin.read()", str(live)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with atomic_folder(target) as tmp:
            (tmp / "a").write_text("a")
        assert not stale.exists()
        assert live.exists()
    finally:
        holder.communicate("")
    assert is_temporary(stale) and is_temporary(live) and not is_temporary(target)


def test_fallback_without_exchange_and_its_recovery(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    with atomic_folder(target) as tmp:
        (tmp / "a").write_text("old")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    with atomic_folder(target, overwrite=True) as tmp:
        (tmp / "a").write_text("new")
    assert _files(target) == {"a": "new"}
    assert _siblings(target) == []
    # a kill between the fallback's two renames: the old folder is aside, the name is absent
    aside = tmp_path / f".ckpt{atomic.OLD_TAG}killed"
    os.rename(target, aside)
    recover(target)
    assert _files(target) == {"a": "new"}
    assert not aside.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2 is Linux-only; elsewhere the fallback (tested above) runs")
def test_exchange_is_what_linux_uses(tmp_path):
    """The documented one-call commit: renameat2(RENAME_EXCHANGE) swaps two folders."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    assert atomic._exchange(a, b), "Linux 3.15+ on ext4/xfs/btrfs/tmpfs has RENAME_EXCHANGE"
    assert (a / "x").read_text() == "b" and (b / "x").read_text() == "a"


def test_lock_is_held_while_writing(tmp_path):
    with atomic_folder(tmp_path / "ckpt") as tmp:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        (tmp / "a").write_text("a")


def test_atomic_file_replaces_in_one_step_with_the_umask(tmp_path):
    from archzoo.atomic import atomic_file

    target = tmp_path / "plot.png"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("matplotlib failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
    old_mask = os.umask(0o022)
    try:
        with atomic_file(target) as tmp:
            tmp.write_text("new")
            os.chmod(tmp, 0o600)  # as mkstemp leaves it
    finally:
        os.umask(old_mask)
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]
