"""Fixtures shared by every test folder."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Returns a function that gives an unused loopback TCP port each call.

    Tests run in parallel: never hard-code a port.
    """
    return _free_port
