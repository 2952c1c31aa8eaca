"""Small programs run inside test pods, and ways to wait for them.

The programs are stdlib-only Python passed with ``-c`` so that the unprivileged pod users need
no access to the test's temporary files.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pilotfish.platform.local.process import PodProcess, run_in_pod, start_in_pod

#: An interpreter every user can run (the test's own one may live in root's home).
POD_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

#: ``TAG PORT``: answers every connection with "TAG ORIGINAL_DST PEER_IP" and closes it.
#: ORIGINAL_DST is what the client asked for (SO_ORIGINAL_DST when iptables redirected it).
ECHO_SERVER = r"""
import socket, struct, sys
tag, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port))
srv.listen(128)
print("listening", port, flush=True)
while True:
    conn, peer = srv.accept()
    try:
        raw = conn.getsockopt(socket.SOL_IP, 80, 16)
        dst = "%s:%d" % (socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0])
    except OSError:
        host, dport = conn.getsockname()[:2]
        dst = "%s:%d" % (host, dport)
    try:
        conn.sendall(("%s %s %s\n" % (tag, dst, peer[0])).encode())
    finally:
        conn.close()
"""

#: ``HOST:PORT[@SOURCE] ...``: connects to each target in turn and prints one line per target:
#: what the server said, or ``error <ExceptionName>``.
CLIENT = r"""
import socket, sys
for target in sys.argv[1:]:
    addr, _, src = target.partition("@")
    host, _, port = addr.rpartition(":")
    try:
        conn = socket.create_connection(
            (host, int(port)), timeout=5, source_address=(src, 0) if src else None
        )
        data = b""
        while True:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        conn.close()
        print(data.decode().strip() or "empty", flush=True)
    except OSError as exc:
        print("error", type(exc).__name__, flush=True)
"""


def wait_for_log(proc: PodProcess, text: str, timeout: float = 20.0) -> str:
    """Wait until ``text`` appears in the process's log; fail early if the process exits."""
    assert proc.log_path is not None
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = proc.log_path.read_text() if proc.log_path.exists() else ""
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"{proc.argv[:3]} exited {proc.poll()}: {content}")
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not in log of {proc.argv[:3]} after {timeout}s: {content}")


def start_echo(
    netns: str | None, tag: str, port: int, uid: int, gid: int, log_dir: Path
) -> PodProcess:
    """Start an echo server and wait until it listens."""
    proc = start_in_pod(
        netns,
        [POD_PYTHON, "-c", ECHO_SERVER, tag, str(port)],
        uid=uid,
        gid=gid,
        log_path=log_dir / f"{netns}-{tag}-{port}.log",
    )
    wait_for_log(proc, "listening")
    return proc


def connect_from(netns: str | None, uid: int, gid: int, *targets: str) -> list[str]:
    """Run :data:`CLIENT` in ``netns`` as ``uid:gid``; one answer line per target."""
    result = run_in_pod(netns, [POD_PYTHON, "-c", CLIENT, *targets], uid=uid, gid=gid, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(targets), result.stdout + result.stderr
    return lines
