"""What the ``archzoo`` command does with every way a command can end badly: one line, a non-zero exit.

    ArchzooError (bad config, checkpoint, argument, not enough memory)  the error's message        exit 2
    OSError (a file that cannot be read or written)                     the path and the reason    exit 1
    MemoryError (the allocator gave up)                                 what to do                 exit 1
    KeyboardInterrupt (Ctrl-C)                                          "interrupted"              exit 130
    BrokenPipeError (output piped into ``head``, which left)            nothing                    exit 141
    anything else: a bug in archzoo                                     one line asking for a report, exit 70;
                                                                        ARCHZOO_TRACEBACK=1 shows the traceback
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from ..config import ConfigError
from ..errors import ArchzooError


def run_command(command: Callable[[], int | None]) -> int:
    try:
        return command() or 0
    except ConfigError as err:
        return _say(f"archzoo: config error: {err}", 2)
    except ArchzooError as err:
        return _say(f"archzoo: {err}", 2)
    except KeyboardInterrupt:
        return _say("archzoo: interrupted", 130)
    except BrokenPipeError:
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a shell tool killed by the pipe would end
    except MemoryError:
        return _say("archzoo: out of memory; try a smaller model, batch or sequence length", 1)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        return _say(f"archzoo: {where}{err.strerror or err}", 1)
    except Exception as err:  # noqa: BLE001 - the boundary: a bug must still end in one line
        if os.environ.get("ARCHZOO_TRACEBACK"):
            raise
        return _say(
            f"archzoo: internal error {type(err).__name__}: {_one_line(str(err))} (a bug in archzoo: please report it; "
            "ARCHZOO_TRACEBACK=1 shows the traceback)",
            70,
        )


def _say(line: str, code: int) -> int:
    try:
        print(_one_line(line), file=sys.stderr, flush=True)
    except (BrokenPipeError, OSError):
        pass
    return code


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not raise again (Python docs, 'Note on SIGPIPE')."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
