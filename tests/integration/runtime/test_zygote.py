"""The sidecar zygote forks real agents into pods: each one in its pod's network namespace,
with its own hosts file and the proxy group, running its own Envoy; its exit is reported."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pilotfish.api.mesh import AGENT_PORT
from pilotfish.platform.local.network import PodNetwork
from pilotfish.platform.local.nsprobe import http_get
from pilotfish.platform.local.process import pod_env
from pilotfish.platform.local.users import MeshUsers
from pilotfish.platform.local.zygote import SpawnRequest, Zygote, ZygoteProcess


@pytest.fixture
def zygote(tmp_path: Path) -> Iterator[Zygote]:
    z = Zygote(tmp_path / "zygote.sock")
    assert z.start(), "the zygote did not start"
    try:
        yield z
    finally:
        z.stop()


def _wait(predicate: object, timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()  # type: ignore[operator]
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _envoy_children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    found = []
    for child in children:
        try:
            if os.readlink(f"/proc/{child}/exe").endswith("envoy"):
                found.append(child)
        except OSError:  # gone, or between fork and exec
            continue
    return found


def _spawn(zygote: Zygote, pod_network: PodNetwork, tmp_path: Path, gid: int) -> ZygoteProcess:
    net = pod_network.create_pod_netns("agent.default")
    hosts = tmp_path / "proxy-hosts"
    hosts.write_text(f"{net.ip} agent.default.svc.cluster.local zygote-test\n")
    options = (
        "--discovery-address", "127.0.0.1:9", "--plaintext", "--pod-name", "agent",
        "--ip", net.ip, "--work-dir", str(tmp_path / "work"),
    )  # fmt: skip
    request = SpawnRequest(
        argv=options,
        netns=pod_network.settings.netns_name("agent.default"),
        log_path=str(tmp_path / "istio-proxy.log"),
        gid=gid,
        env=pod_env(),
        cwd=str(tmp_path),
        binds=((str(hosts), "/etc/hosts"),),
    )
    return zygote.client().spawn(request)


def test_a_forked_agent_runs_in_its_pod_with_its_own_envoy_and_its_exit_is_reported(
    zygote: Zygote, pod_network: PodNetwork, mesh_users: MeshUsers, tmp_path: Path
) -> None:
    gid = mesh_users.proxy.gid
    agent = _spawn(zygote, pod_network, tmp_path, gid)
    try:
        netns = pod_network.settings.netns_name("agent.default")
        # The fork answers at once; the child is set up once it has started its Envoy.
        envoys = _wait(lambda: _envoy_children(agent.pid))
        assert isinstance(envoys, list) and len(envoys) == 1
        assert os.stat(f"/proc/{agent.pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
        assert os.stat(f"/proc/{agent.pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        with open(f"/proc/{agent.pid}/status") as f:
            gids = next(line for line in f if line.startswith("Gid:")).split()[1:]
        assert set(gids) == {str(gid)}
        # Its own hosts file, in its own mount namespace (the host's is untouched).
        assert "zygote-test" in Path(f"/proc/{agent.pid}/root/etc/hosts").read_text()
        assert "zygote-test" not in Path("/etc/hosts").read_text()
        # The agent's readiness answers inside the pod: not ready, no control plane.
        answer = _wait(lambda: http_get(netns, AGENT_PORT, "/healthz/ready"))
        assert isinstance(answer, tuple) and answer[0] == 503
        assert agent.poll() is None
        assert agent.stop(grace=10) == 0  # SIGTERM: drained and stopped cleanly
        assert not os.path.exists(f"/proc/{envoys[0]}/exe")
    finally:
        agent.stop(grace=5)


def test_a_killed_agent_is_reported_with_its_signal(
    zygote: Zygote, pod_network: PodNetwork, mesh_users: MeshUsers, tmp_path: Path
) -> None:
    agent = _spawn(zygote, pod_network, tmp_path, mesh_users.proxy.gid)
    try:
        _wait(lambda: _envoy_children(agent.pid))
        os.kill(agent.pid, 9)
        assert agent.wait(10) == -9
        assert agent.poll() == -9
    finally:
        agent.stop(grace=5)


def test_the_zygote_dies_with_the_runtime_that_started_it(tmp_path: Path) -> None:
    socket_path = tmp_path / "z.sock"
    script = (
        "import sys, time; from pathlib import Path; "
        "from pilotfish.platform.local.zygote import Zygote; "
        f"z = Zygote(Path({str(socket_path)!r})); assert z.start(); "
        "print(z._proc.pid, flush=True); time.sleep(60)"
    )
    runtime = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert runtime.stdout is not None
        zygote_pid = int(runtime.stdout.readline())
        assert socket_path.exists()
        runtime.kill()  # a crashed runtime: SIGKILL, no clean-up of its own
        runtime.wait()
        _wait(lambda: not Path(f"/proc/{zygote_pid}").exists() or _zombie(zygote_pid), 10)
        _wait(lambda: not socket_path.exists(), 10)
    finally:
        runtime.kill()
        runtime.wait()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except (OSError, IndexError):
        return True
