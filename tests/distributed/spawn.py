"""Start N local processes with torchrun (gloo on localhost) and never leave one behind.

``--standalone`` makes torchrun pick a free port for its rendezvous and the process
group's store. The launcher runs in a session of its own, so on a timeout (or any
failure) the whole group - torchrun and every worker - is killed with one signal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def torchrun(args: list[str], nproc: int = 2, timeout: float = 300) -> str:
    """Run ``python -m torch.distributed.run ... args`` and return its output; AssertionError on failure."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return run_in_own_session(command, timeout)


def run_in_own_session(command: list[str], timeout: float) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"{' '.join(command[:6])} ... timed out after {timeout} s:\n{output[-4000:]}") from None
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # any worker still alive in the session
        except ProcessLookupError:
            pass
    if process.returncode != 0:
        raise AssertionError(f"exit status {process.returncode}:\n{output[-6000:]}")
    return output
