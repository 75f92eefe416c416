"""archzoo's errors: one base class, so callers (and the CLI) can catch all of them.

Every error a user can cause (a bad config, a bad checkpoint folder, a bad
argument to ``forward`` or ``generate``) is an ``ArchzooError`` whose message
names the file, field or argument and the rule it broke. The ``archzoo``
command catches ``ArchzooError`` at its boundary and prints that one line.

Each subclass also derives from the built-in exception a Python user would
reach for first (``ValueError``), so ``except ValueError`` keeps working.
This module imports no torch: ``config/`` uses it.
"""

from __future__ import annotations


class ArchzooError(Exception):
    """Base class of every error archzoo raises on purpose."""


class CheckpointError(ArchzooError, ValueError):
    """A checkpoint folder (config.json, safetensors, adapter, run folder) cannot be read or written as asked.
    The message names the folder or file."""


class InputError(ArchzooError, ValueError):
    """A bad argument to a model call, ``generate`` or another API function; the message names the argument."""


class InsufficientMemory(ArchzooError, MemoryError):
    """The work asked for needs more memory than the machine (or its cgroup) has free; the message gives
    both figures and the flag that forces it. Raised before anything is allocated."""
