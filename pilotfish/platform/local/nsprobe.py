"""Probes from the runtime into a pod's network namespace without starting a process.

A socket belongs to the network namespace of the thread that created it, for its whole life.
:func:`netns_socket` creates one in a short-lived thread that first joins the pod's namespace
(``setns(2)`` on ``/run/netns/NAME``; only that thread moves, and it ends right after), so the
caller can then ``connect()`` to ``127.0.0.1:PORT`` *inside* the pod from any thread. That is
how the runtime checks that an app listens (its readiness) in well under a millisecond, where
``ip netns exec ... probe`` would cost a process start each time.

Connections the runtime opens this way come from root on ``lo``; istio-init's rules let
loopback traffic of non-proxy users through, so a sidecar's capture never sees them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from pathlib import Path

__all__ = ["NETNS_RUN_DIR", "http_get", "http_status", "netns_socket", "tcp_open"]

NETNS_RUN_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def netns_socket(netns: str, run_dir: Path = NETNS_RUN_DIR) -> socket.socket:
    """A TCP socket created inside ``netns``. Raises ``OSError`` if the namespace is gone."""
    result: dict[str, socket.socket | BaseException] = {}

    def work() -> None:
        try:
            fd = os.open(run_dir / netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result["sock"] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=work, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    sock = result.get("sock")
    if isinstance(sock, socket.socket):
        return sock
    error = result.get("error")
    if isinstance(error, BaseException):
        raise error
    raise OSError(errno.EIO, f"no socket in {netns}")


def tcp_open(netns: str, port: int, host: str = "127.0.0.1", timeout: float = 0.2) -> bool:
    """Whether something accepts TCP connections on ``host:port`` inside ``netns``."""
    try:
        sock = netns_socket(netns)
    except OSError:
        return False
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        return True
    except OSError:
        return False
    finally:
        sock.close()


def http_status(
    netns: str, port: int, path: str, host: str = "127.0.0.1", timeout: float = 0.5
) -> int | None:
    """The status code of ``GET path`` on ``host:port`` inside ``netns`` (``None``: no answer)."""
    answer = http_get(netns, port, path, host, timeout, status_only=True)
    return answer[0] if answer is not None else None


def http_get(
    netns: str,
    port: int,
    path: str,
    host: str = "127.0.0.1",
    timeout: float = 0.5,
    status_only: bool = False,
) -> tuple[int, dict[str, str], str] | None:
    """``(status, headers, body)`` of ``GET path`` inside ``netns`` (``None``: no answer).

    Header names are lower-cased; the body is read up to 16 KiB (``status_only``: not at all).
    """
    try:
        sock = netns_socket(netns)
    except OSError:
        return None
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        need = b"\r\n" if status_only else b"\r\n\r\n"
        while len(data) < 16384:
            if need in data and status_only:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return None
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers, body.decode(errors="replace")
    except OSError:
        return None
    finally:
        sock.close()
