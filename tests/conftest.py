"""Fixtures shared by every test folder."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Ports for test servers come from a slice of 20000-32767 per pytest-xdist worker, below the
# kernel's ephemeral range (32768-60999 here): a port the OS picks for bind(0) is ephemeral,
# and an outgoing connection of another test may take it before the server under test binds
# it. Ports are handed out in turn, so one is reused only after the whole slice went round.
_BASE, _SLICE = 20000, 3000


def _worker_ports() -> Iterator[int]:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    low = _BASE + (index % 4) * _SLICE
    return itertools.cycle(range(low, low + _SLICE))


_PORTS = _worker_ports()


def _is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))  # free on every address, loopback aliases included
        except OSError:
            return False
    return True


def _free_port() -> int:
    for _ in range(_SLICE):
        port = next(_PORTS)
        if _is_free(port):
            return port
    raise RuntimeError("no free port left in this worker's slice")


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Returns a function that gives an unused TCP port each call.

    Tests run in parallel: never hard-code a port.
    """
    return _free_port


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's ``tmp_path`` sits below a private one), for
    tests of what unprivileged users can reach."""
    path = Path(tempfile.mkdtemp(prefix="pf-access-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir():
            sub.chmod(0o755)
    shutil.rmtree(path)


# A throwaway PostgreSQL cluster for the tests that need one (skips without the binaries).
from tests.postgres import postgres_cluster  # noqa: E402

__all__ = ["free_port", "open_dir", "postgres_cluster"]
