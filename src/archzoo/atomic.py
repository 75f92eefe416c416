"""All-or-nothing folder writes: ``atomic_folder(path, overwrite=False)``.

Every folder archzoo writes (checkpoints, adapters, training runs) goes through
this context manager::

    with atomic_folder(path, overwrite=True) as tmp:
        ...write every file into tmp...

The guarantee, for a local POSIX filesystem (ext4, xfs, btrfs, tmpfs) on Linux:

* **On success** ``path`` holds exactly the files written into ``tmp`` - an
  existing folder is replaced whole (never merged), and only when
  ``overwrite=True``; otherwise a non-empty ``path`` raises ``CheckpointError``
  before anything is written. Every file and folder is fsynced, and so is the
  parent folder, before the context exits: after a power loss the new folder
  is there whole.
* **On an exception, or a kill (SIGKILL, power loss) at any instant**, ``path``
  is untouched: it holds the complete old folder, or the complete new one once
  the single commit step has happened. Never a mix, never absent.
* The commit is one system call. Replacing an existing folder uses
  ``renameat2(RENAME_EXCHANGE)`` (Linux 3.15+; ext4, xfs, btrfs, tmpfs),
  which swaps the two names atomically; the old folder, now under the
  temporary name, is then deleted. A new folder (or an empty one) is put in
  place with a plain ``rename``, which POSIX makes atomic.
* Where the exchange is not available (another OS, a filesystem that refuses
  it), the fallback renames the old folder aside (``.NAME.archzoo-old-*``) and
  the new one in: two calls, between which ``path`` is briefly absent. The next
  ``atomic_folder`` on that path, and ``recover(path)`` (which
  ``load_pretrained`` calls), put the old folder back if ``path`` is missing, so
  a reader still only ever sees the old or the new folder.
* Temporaries are hidden siblings named ``.NAME.archzoo-tmp-*`` (and
  ``.NAME.archzoo-old-*``); ``is_temporary`` recognises them, so nothing that
  scans a folder for checkpoints mistakes them for one. A writer holds an
  ``flock`` on its temporary folder; the next write to the same path deletes
  every temporary whose lock is free (its writer was killed) and leaves those of
  live writers alone. The kernel drops the lock when a process dies, so pid
  reuse cannot fool it.
* Files and folders get the user's umask (``0666 & ~umask``, ``0777 & ~umask``
  for folders and executables), not the 0600 / 0700 of ``mkstemp`` /
  ``mkdtemp`` or of libraries that write through them.

Not guaranteed: network filesystems whose rename or flock is not atomic, and
two writers racing for the same ``path`` (each commit is whole; the last wins).
If ``path`` is a symlink, the folder it points to is replaced and the link kept.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CheckpointError

__all__ = ["atomic_file", "atomic_folder", "is_temporary", "recover"]

TMP_TAG = ".archzoo-tmp-"
OLD_TAG = ".archzoo-old-"


def is_temporary(path: str | Path) -> bool:
    """True for the hidden temporaries ``atomic_folder`` writes (never a finished folder)."""
    name = Path(path).name
    return name.startswith(".") and (TMP_TAG in name or OLD_TAG in name)


@contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder; on a clean exit it becomes ``path`` in one atomic step.

    overwrite: replace an existing non-empty folder whole (else ``CheckpointError``).
    See the module docstring for the exact guarantee under exceptions and kills.
    """
    target = _resolve(Path(path))
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CheckpointError(f"{target}: cannot create the parent folder {parent}: {err.strerror or err}") from err
    recover(target)
    _check_target(target, overwrite)
    _clean_stale(target)
    tmp = parent / f".{target.name}{TMP_TAG}{secrets.token_hex(6)}"
    try:
        tmp.mkdir()
    except OSError as err:
        raise CheckpointError(f"{target}: cannot write into {parent}: {err.strerror or err}") from err
    lock = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield tmp
            _finish_files(tmp)
            _commit(tmp, target, overwrite)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)  # the old folder after an exchange, or the abandoned new one
    finally:
        os.close(lock)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling file name; on a clean exit it replaces ``path`` in one rename.

    The file gets the user's umask and is fsynced first; on an exception (or a kill) ``path`` is
    untouched and the temporary is removed (a kill leaves a hidden ``.NAME.archzoo-tmp-*`` file).
    A folder that cannot be created or written raises the ``OSError``, for the caller to name its argument."""
    target = Path(path).expanduser().absolute()
    target.parent.mkdir(parents=True, exist_ok=True)  # OSErrors pass through: the caller names its flag
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file name", str(target))
    tmp = target.parent / f".{target.name}{TMP_TAG}{secrets.token_hex(6)}{target.suffix}"
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def recover(path: str | Path) -> None:
    """Undo a fallback replace that was killed half-way: if ``path`` is missing, restore the old folder."""
    target = _resolve(Path(path))
    if target.exists() or not target.parent.is_dir():
        return
    olds = sorted(target.parent.glob(f".{_glob_escape(target.name)}{OLD_TAG}*"), key=lambda p: p.stat().st_mtime)
    if olds:
        os.rename(olds[-1], target)
        _fsync_dir(target.parent)


# ---- steps ----


def _resolve(path: Path) -> Path:
    path = path.expanduser()
    if path.is_symlink():
        return path.resolve()
    return path.absolute()


def _check_target(target: Path, overwrite: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise CheckpointError(f"{target}: exists and is not a folder; remove it or choose another path")
    if not overwrite and any(target.iterdir()):
        raise CheckpointError(f"{target}: the folder exists and is not empty; pass overwrite=True (--overwrite) to replace it whole")


def _clean_stale(target: Path) -> None:
    """Delete temporaries of earlier writes to ``target`` whose writer is gone (its flock is free)."""
    for stale in target.parent.glob(f".{_glob_escape(target.name)}.archzoo-*"):
        if not is_temporary(stale) or not stale.is_dir():
            continue
        if OLD_TAG in stale.name:
            shutil.rmtree(stale, ignore_errors=True)  # recover() already ran: target exists, so this is a leftover
            continue
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live writer holds it
        finally:
            os.close(fd)
        shutil.rmtree(stale, ignore_errors=True)


def _finish_files(tmp: Path) -> None:
    """Give every file and folder the user's umask, fsync them, deepest first."""
    umask = _umask()
    for root, dirs, files in os.walk(tmp, topdown=False):
        for name in files:
            file = os.path.join(root, name)
            if os.path.islink(file):
                continue
            executable = os.stat(file).st_mode & 0o100
            os.chmod(file, (0o777 if executable else 0o666) & ~umask)
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for name in dirs:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o777 & ~umask)
        _fsync_dir(Path(root))
    os.chmod(tmp, 0o777 & ~umask)


def _commit(tmp: Path, target: Path, overwrite: bool) -> None:
    parent = target.parent
    try:
        os.rename(tmp, target)  # atomic when target is absent or an empty folder
    except OSError as err:
        if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise CheckpointError(f"{target}: cannot move the new folder into place: {err.strerror or err}") from err
        if not overwrite:
            raise CheckpointError(
                f"{target}: a non-empty folder appeared there while writing; pass overwrite=True to replace it"
            ) from err
        if not _exchange(tmp, target):
            _replace_by_two_renames(tmp, target)
    _fsync_dir(parent)


def _replace_by_two_renames(tmp: Path, target: Path) -> None:
    old = target.parent / f".{target.name}{OLD_TAG}{secrets.token_hex(6)}"
    os.rename(target, old)
    _fsync_dir(target.parent)  # the aside rename must be durable before the new folder takes the name
    os.rename(tmp, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


# ---- system helpers ----

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2(RENAME_EXCHANGE); False where unsupported."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            _libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        except (OSError, AttributeError):
            _libc = False
    if not _libc:
        return False
    result = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise CheckpointError(f"{b}: cannot swap the new folder into place: {os.strerror(code)}")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask, read without changing it (``/proc``), else by the set-and-restore dance."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
