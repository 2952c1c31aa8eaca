"""The HTTP API's worker process (``pilotfish.apiserver.worker``): it holds the API port,
answers reads of config from the store and forwards the rest to the control plane; writes
through it reach real Envoys; it is restarted when it dies, goes away with the control plane
(even after SIGKILL), and a worker that cannot start stops the control plane with its
reason."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import ControlPlane, Mesh, eventually, start_control_plane
from tests.integration.mesh.test_routing import SERVICES, weighted

WORKER_MODULE = "pilotfish.apiserver.worker"


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The parent pid is the second field after the command name in parentheses.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _workers(cp: ControlPlane) -> list[int]:
    return [p for p in _children(cp.proc.pid) if WORKER_MODULE in _cmdline(p)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listener_pid(port: int) -> int | None:
    """The process holding the listening TCP socket on 127.0.0.1:``port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        if state == "0A" and int(local.split(":")[1], 16) == port:
            inode = fields[9]
    if inode is None:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir(f"/proc/{entry}/fd"):
                if os.readlink(f"/proc/{entry}/fd/{fd}") == f"socket:[{inode}]":
                    return int(entry)
        except OSError:
            continue
    return None


def _vs_names(cp: ControlPlane) -> set[str]:
    r = httpx.get(
        f"{cp.url}/apis/networking.istio.io/v1/namespaces/default/virtualservices",
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=10,
    )
    r.raise_for_status()
    return {item["metadata"]["name"] for item in r.json()["items"]}


def test_writes_through_the_worker_reach_envoy_and_reads_see_them(mesh: Mesh) -> None:
    cp = mesh.cp
    [worker] = _workers(cp)
    assert _listener_pid(cp.api_port) == worker, "the worker holds the API port"
    mesh.apply(SERVICES + "---" + weighted({"v1": 100}))
    for v in ("v1", "v3"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)

    def version() -> str:
        r = client.request("reviews:9080")
        return str(r.json()["version"]) if r.status_code == 200 else ""

    eventually(lambda: version() == "v1", what="traffic to v1")
    # The write goes through the worker to the control plane, which pushes it to Envoy.
    mesh.apply(weighted({"v3": 100}))
    eventually(lambda: version() == "v3", what="the VirtualService applied through the worker")
    assert {version() for _ in range(5)} == {"v3"}
    # Reads answered by the worker from the store see the write at once.
    assert _vs_names(cp) == {"reviews"}
    body = httpx.get(
        f"{cp.url}/apis/networking.istio.io/v1/namespaces/default/virtualservices/reviews",
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=10,
    ).json()
    assert body["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v3"
    # What needs the xDS server's state is forwarded to it.
    status = cp.cli("proxy-status", check=True).stdout
    assert "productpage" in status
    # The audit log names the caller's address, not the worker's socket.
    audit = httpx.get(
        f"{cp.url}/apis/pilotfish.io/v1/audit",
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=10,
    ).json()["items"]
    assert audit[-1]["sourceIP"] == "127.0.0.1"
    # A caller without a token is refused as before (the control plane answers).
    refused = httpx.get(
        f"{cp.url}/apis/networking.istio.io/v1/namespaces/default/virtualservices", timeout=10
    )
    assert refused.status_code == 401


def test_a_dead_worker_is_restarted(control_plane: ControlPlane) -> None:
    cp = control_plane
    [worker] = _workers(cp)
    os.kill(worker, signal.SIGKILL)
    eventually(lambda: bool(_workers(cp)) and _workers(cp) != [worker], what="a new worker")
    eventually(lambda: _vs_names(cp) == set(), what="the API answers again")
    assert cp.proc.poll() is None
    log = cp.log.read_text()
    assert f"the API worker (pid {worker}) exited" in log


def test_the_worker_goes_with_the_control_plane(control_plane: ControlPlane) -> None:
    cp = control_plane
    [worker] = _workers(cp)
    argv = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    sock_dir = Path(
        json.loads(argv[argv.index(b"pilotfish.apiserver.worker") + 1])["upstream"]
    ).parent
    assert sock_dir.is_dir()
    cp.kill(signal.SIGKILL)
    eventually(lambda: not _alive(worker), 10, "the worker exits after its control plane")
    assert not sock_dir.exists(), "the worker removed the control plane's socket directory"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{cp.url}/healthz", timeout=2)


def test_the_worker_stops_with_the_control_plane(control_plane: ControlPlane) -> None:
    cp = control_plane
    [worker] = _workers(cp)
    started = time.monotonic()
    cp.kill(signal.SIGTERM)
    assert cp.proc.returncode == 0
    assert not _alive(worker), "stopped before the control plane exited"
    assert time.monotonic() - started < 10


def test_a_worker_that_cannot_start_stops_the_control_plane(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(AssertionError, match="control plane exited") as exc:
            start_control_plane(tmp_path / "data", tmp_path / "config", port, free_port())
    finally:
        taken.close()
    message = str(exc.value)
    assert f"the API worker did not start on 127.0.0.1:{port}" in message
    assert "the control plane did not start" in message
