"""``<state>/mesh.json``: what ``pilotfish up`` started (pid, command line and log of each
part), read by ``down``/``status`` and by the runtime's control-plane supervisor; and the
lock that keeps ``up``/``down`` and the supervisor from changing the mesh at the same time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MESH_FILE = "mesh.json"
LOCK_FILE = "mesh.lock"

_held = threading.local()


def load_mesh(state_dir: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((state_dir / MESH_FILE).read_text())
        return data if isinstance(data, dict) else None
    return None


def save_mesh(state_dir: Path, data: dict[str, Any]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = state_dir / (MESH_FILE + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(state_dir / MESH_FILE)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    # Arguments end with a NUL each; an empty argument (``--dashboard-listen ""``) is kept.
    return [p.decode(errors="replace") for p in raw.split(b"\0")[:-1]]


def process_alive(entry: dict[str, Any] | None) -> bool:
    """Whether a recorded process still runs (same pid AND same command line)."""
    if not entry:
        return False
    return cmdline(int(entry.get("pid", 0))) == list(entry.get("argv") or [])


@contextlib.contextmanager
def mesh_lock(state_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the mesh's lock (re-entrant within a thread); yields False when ``wait`` is off
    and someone else holds it."""
    depth = getattr(_held, "depth", 0)
    if depth:
        _held.depth = depth + 1
        try:
            yield True
        finally:
            _held.depth -= 1
        return
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        _held.depth = 1
        try:
            yield True
        finally:
            _held.depth = 0
    finally:
        os.close(fd)


__all__ = ["MESH_FILE", "cmdline", "load_mesh", "mesh_lock", "process_alive", "save_mesh"]
