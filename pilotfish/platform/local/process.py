"""Processes inside pods: start one in a pod's network namespace as a given user, stop it fully.

A pod process is started as::

    ip netns exec NS setpriv --reuid U --regid G --clear-groups --no-new-privs -- CMD...

``ip netns exec`` (not ``nsenter``) is what bind-mounts ``/etc/netns/NS/hosts`` over
``/etc/hosts``, and both it and ``setpriv`` exec in place, so the PID returned is the PID of the
command itself. Each process leads its own session and process group; :meth:`PodProcess.stop`
sends SIGTERM to the group, waits a grace period, then SIGKILLs the group so no child survives.
:func:`kill_netns_processes` is the last resort for processes that left their group (or were
left behind by a crashed runtime): it kills everything still inside a namespace.

The environment is explicit: a small base (``PATH``, ``HOME``, ``LANG``) plus what the caller
passes; nothing of the runtime's own environment leaks into pods.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pilotfish.platform.local.commands import PlatformError, run

__all__ = [
    "BASE_ENV",
    "PodProcess",
    "kill_netns_processes",
    "netns_pids",
    "pod_command",
    "pod_env",
    "run_in_pod",
    "start_in_pod",
]

BASE_ENV: Mapping[str, str] = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/",
    "LANG": "C.UTF-8",
}


#: Bind-mounts ``$0`` on ``$1`` in the process's own mount namespace, enters it, runs the rest.
BIND_AND_ENTER = 'mount --bind "$0" "$1" && cd "$1" && shift && exec "$@"'


def pod_command(
    netns: str | None,
    argv: Sequence[str],
    uid: int | None = None,
    gid: int | None = None,
    bind: tuple[str | Path, str | Path] | None = None,
) -> list[str]:
    """The full command line running ``argv`` in ``netns`` (host if ``None``) as ``uid:gid``.

    ``uid``/``gid`` ``None`` keeps the caller's identity. ``bind`` ``(source, mount point)``:
    first (still as root) bind-mount ``source`` on ``mount point`` and make it the working
    directory - inside the private mount namespace ``ip netns exec`` creates for the process,
    so the host never sees the mount. Pure.
    """
    if not argv:
        raise ValueError("empty command")
    if (uid is None) != (gid is None):
        raise ValueError("give both uid and gid, or neither")
    cmd = list(argv)
    if uid is not None:
        cmd = [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            "--no-new-privs",
            "--",
            *cmd,
        ]
    if bind is not None:
        if netns is None:
            raise ValueError("a bind mount needs the private mount namespace of a pod")
        cmd = ["/bin/sh", "-c", BIND_AND_ENTER, str(bind[0]), str(bind[1]), *cmd]
    if netns is not None:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return cmd


def pod_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """:data:`BASE_ENV` overlaid with ``env``. Pure."""
    return {**BASE_ENV, **(env or {})}


@dataclass
class PodProcess:
    """A running pod process (leader of its own process group)."""

    netns: str | None
    argv: list[str]
    popen: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def pgid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL the group. Idempotent.

        Returns the leader's exit status.
        """
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        # Children may outlive the leader; the group id stays reserved while any member lives.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(grace)
        return self.popen.returncode


def start_in_pod(
    netns: str | None,
    argv: Sequence[str],
    *,
    uid: int | None = None,
    gid: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
    bind: tuple[str | Path, str | Path] | None = None,
) -> PodProcess:
    """Start ``argv`` in ``netns`` as ``uid:gid``; stdout and stderr append to ``log_path``.

    Without ``log_path`` output is discarded. The log file is opened by the caller's (root)
    identity, so the process need not be able to create it. ``bind``: see :func:`pod_command`.
    """
    cmd = pod_command(netns, argv, uid, gid, bind)
    log = Path(log_path) if log_path is not None else None
    out: int | object = subprocess.DEVNULL
    fd: int | None = None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        out = fd
    try:
        popen = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT,
            env=pod_env(env),
            cwd=str(cwd) if cwd is not None else None,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise PlatformError(f"{cmd[0]}: command not found", cmd) from exc
    finally:
        if fd is not None:
            os.close(fd)
    return PodProcess(netns=netns, argv=list(argv), popen=popen, log_path=log)


def run_in_pod(
    netns: str | None,
    argv: Sequence[str],
    *,
    uid: int | None = None,
    gid: int | None = None,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion in ``netns`` as ``uid:gid`` and capture its output (no check)."""
    cmd = pod_command(netns, argv, uid, gid)
    try:
        return subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            env=pod_env(env),
            timeout=timeout,
            check=False,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise PlatformError(f"{cmd[0]}: command not found", cmd) from exc


def netns_pids(netns: str) -> list[int]:
    """PIDs of every process whose network namespace is ``netns`` (empty if it does not exist)."""
    result = run(["ip", "netns", "pids", netns], check=False)
    if result.returncode != 0:
        return []
    return [int(tok) for tok in result.stdout.split() if tok.isdigit()]


def kill_netns_processes(netns: str, grace: float = 2.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process inside ``netns``; returns the PIDs found."""
    pids = netns_pids(netns)
    if not pids:
        return []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = pids
    while remaining and time.monotonic() < deadline:
        time.sleep(0.05)
        remaining = [p for p in netns_pids(netns) if p in pids]
    for pid in netns_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while netns_pids(netns) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids
