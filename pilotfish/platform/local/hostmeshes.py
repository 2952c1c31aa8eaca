"""Which local meshes run on this host, and what each one owns here.

A mesh's host objects (bridge, veths, namespaces, rules, the pod range's routes) are named by
its prefix, and several meshes may share a host only when they share nothing. Two records make
that checkable from any process, whatever its ``HOME`` or data directory:

- **the prefix lock** ``/run/pilotfish/locks/<prefix>.lock``: an exclusive ``flock`` held by
  the mesh's runtime for its whole life (``pilotfish up`` takes it first and hands the locked
  descriptor to the runtime it starts, so there is no gap). The kernel drops it when the
  runtime dies, so "held" means "a live runtime owns this prefix": nothing may then remove
  that prefix's objects as leftovers.
- **the mesh record** ``/run/pilotfish/meshes/<prefix>.json``: what ``up`` started (data and
  state directories, API, ports, ranges), so a refused ``up`` can name the running mesh and
  say how to stop it.

:func:`conflicts` is the pure rule: a new mesh may not share a prefix, overlap a pod or
service range, or bind a port of a running one.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = [
    "LOCKS_DIR",
    "MESHES_DIR",
    "MeshRecord",
    "PrefixBusy",
    "PrefixLock",
    "conflicts",
    "port_problem",
    "prefix_locked",
    "read_records",
    "remove_record",
    "running_meshes",
    "write_record",
]

LOCKS_DIR = Path("/run/pilotfish/locks")
MESHES_DIR = Path("/run/pilotfish/meshes")


class PrefixBusy(Exception):
    """Another live process holds the prefix lock."""


@dataclass(frozen=True)
class MeshRecord:
    """What a running mesh owns on this host."""

    prefix: str
    data_dir: str
    state_dir: str
    api: str
    pod_cidr: str
    service_cidr: str
    #: ``(address, port)`` of every TCP port the mesh's processes listen on.
    ports: tuple[tuple[str, int], ...] = ()
    pids: tuple[int, ...] = field(default=())

    def describe(self) -> str:
        return (
            f"the mesh of data directory {self.data_dir} (API {self.api}, prefix "
            f"{self.prefix!r}, pods {self.pod_cidr})"
        )


def _overlap(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_network(a, strict=False).overlaps(ipaddress.ip_network(b, strict=False))
    except ValueError:
        return False


def _same_port(a: tuple[str, int], b: tuple[str, int]) -> bool:
    wildcard = ("0.0.0.0", "", "::")
    return a[1] == b[1] and (a[0] == b[0] or a[0] in wildcard or b[0] in wildcard)


def conflicts(new: MeshRecord, running: MeshRecord) -> list[str]:
    """What ``new`` would share with ``running`` (empty: they can run side by side). Pure."""
    out = []
    if new.prefix == running.prefix:
        out.append(f"the name prefix {new.prefix!r} (choose another with --prefix)")
    ranges = (("pod", new.pod_cidr), ("service", new.service_cidr))
    theirs = (("pod", running.pod_cidr), ("service", running.service_cidr))
    for what, mine in ranges:
        for other_what, other in theirs:
            if _overlap(mine, other):
                out.append(
                    f"its {what} range {mine} overlaps the running mesh's {other_what} range "
                    f"{other} (choose another with --pod-cidr)"
                )
    shared = sorted(
        {p for p in new.ports for q in running.ports if _same_port(p, q)}, key=lambda p: p[1]
    )
    if shared:
        out.append("ports " + ", ".join(f"{a or '*'}:{p}" for a, p in shared))
    return out


def port_problem(address: str, port: int) -> str | None:
    """Why ``address:port`` cannot be listened on now (``None``: it is free)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            sock.listen(1)
        except OSError as exc:
            return f"{address}:{port}: {exc.strerror or exc}"
    return None


# ---------------------------------------------------------------- the prefix lock


class PrefixLock:
    """The exclusive lock of one prefix, held through an open descriptor.

    A process holds at most one lock per prefix: :meth:`acquire` returns the one it holds.
    """

    _held: dict[str, PrefixLock] = {}

    def __init__(self, prefix: str, fd: int) -> None:
        self.prefix = prefix
        self.fd = fd

    @classmethod
    def acquire(cls, prefix: str, locks_dir: Path = LOCKS_DIR) -> PrefixLock:
        """Take the lock now or raise :class:`PrefixBusy`."""
        held = cls._held.get(prefix)
        if held is not None:
            return held
        locks_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        fd = os.open(locks_dir / f"{prefix}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PrefixBusy(f"the prefix {prefix!r} is in use by a running mesh") from None
        lock = cls(prefix, fd)
        cls._held[prefix] = lock
        return lock

    @classmethod
    def adopt(cls, prefix: str, fd: int) -> PrefixLock:
        """Take over a descriptor that already holds the lock (inherited from ``up``)."""
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same open file: no-op if held
        os.set_inheritable(fd, False)
        lock = cls(prefix, fd)
        cls._held[prefix] = lock
        return lock

    def release(self) -> None:
        """Let go of the lock (idempotent; other descriptors of it, a child's, keep it)."""
        if self._held.get(self.prefix) is self:
            del self._held[self.prefix]
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


def prefix_locked(prefix: str, locks_dir: Path = LOCKS_DIR) -> bool:
    """Whether another process holds the prefix lock (a live runtime owns the prefix)."""
    if prefix in PrefixLock._held:
        return False
    path = locks_dir / f"{prefix}.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


# ---------------------------------------------------------------- mesh records


def write_record(record: MeshRecord, meshes_dir: Path = MESHES_DIR) -> None:
    meshes_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = meshes_dir / f".{record.prefix}.json.tmp"
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    tmp.replace(meshes_dir / f"{record.prefix}.json")


def remove_record(prefix: str, meshes_dir: Path = MESHES_DIR) -> None:
    with contextlib.suppress(FileNotFoundError):
        (meshes_dir / f"{prefix}.json").unlink()


def read_records(meshes_dir: Path = MESHES_DIR) -> list[MeshRecord]:
    out = []
    if meshes_dir.is_dir():
        for path in sorted(meshes_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                raw = json.loads(path.read_text())
                raw["ports"] = tuple(tuple(p) for p in raw.get("ports") or ())
                raw["pids"] = tuple(raw.get("pids") or ())
                out.append(MeshRecord(**raw))
    return out


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is (still) a Pilotfish process (a reused pid is not)."""
    try:
        return b"pilotfish" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def running_meshes(meshes_dir: Path = MESHES_DIR, locks_dir: Path = LOCKS_DIR) -> list[MeshRecord]:
    """Meshes on this host that still run (their prefix is locked or a process lives)."""
    return [
        r
        for r in read_records(meshes_dir)
        if prefix_locked(r.prefix, locks_dir) or any(_pid_alive(p) for p in r.pids)
    ]
