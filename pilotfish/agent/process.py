"""Child processes of the agent: they die with it and are stopped as a group.

Every process the agent starts (Envoy, the explicit-mode app) runs in its own session and
process group, and gets ``PR_SET_PDEATHSIG`` = SIGKILL, so a crashed or SIGKILLed agent
leaves nothing behind. Stopping sends SIGTERM to the group, then SIGKILL after a grace
period, and reaps the child.

The death signal is set by util-linux ``setpriv --pdeathsig KILL`` which then execs the real
command (same pid). A ``preexec_fn`` calling ``prctl`` is the fallback only when ``setpriv``
is missing: running Python code between fork and exec can crash the child when other
threads exist (measured: a segfault in the child with a grpc server in the same process).
With ``setpriv`` a window of a few milliseconds remains between fork and ``prctl`` in
which an agent crash would orphan the child (``setpriv`` does not recheck its parent). The
signal follows the *thread* that forked, so spawn from a thread that lives as long as
the agent (the asyncio loop's thread does). It survives the switch to another user
(``user=``), which happens before ``setpriv`` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
from collections.abc import Callable, Mapping, Sequence

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """``preexec_fn``: SIGKILL this child when the forking thread dies."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    prctl = libc.prctl

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def death_signal_wrapper() -> list[str] | None:
    """``setpriv`` arguments that set the parent death signal, or None if unavailable."""
    setpriv = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else None


async def spawn_child(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    user: str | int | None = None,
    group: int | None = None,
) -> asyncio.subprocess.Process:
    """Start ``cmd`` in its own session, killed when the agent dies; stdin is /dev/null."""
    wrapper = death_signal_wrapper()
    preexec = None if wrapper else die_with_parent(os.getpid())
    return await asyncio.create_subprocess_exec(
        *(wrapper or []),
        *cmd,
        env=None if env is None else dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=preexec,
        user=user,
        group=group,
    )


async def terminate(proc: asyncio.subprocess.Process, timeout_s: float) -> int:
    """SIGTERM the process group of ``proc``, then SIGKILL after ``timeout_s``; reap it."""
    if proc.returncode is not None:
        return proc.returncode
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        return await asyncio.wait_for(proc.wait(), timeout=timeout_s)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        return await proc.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def pids_alive(pids: Sequence[int]) -> list[int]:
    """The pids of ``pids`` that still exist (zombies count as gone)."""
    alive = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive
