"""LocalPod on a private bridge (root): start, readiness, names and VIPs, restarts, stop.

No control plane: pods without a sidecar need none. Each test has its own prefix and /24
(fixtures of tests/integration/platform), so these run in parallel with everything else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pilotfish.platform.local.commands import IptablesTools, run
from pilotfish.platform.local.hosts import ServiceName
from pilotfish.platform.local.network import PodNetwork
from pilotfish.platform.local.nsprobe import http_status, tcp_open
from pilotfish.platform.local.process import netns_pids, run_in_pod
from pilotfish.platform.local.runtime_model import new_pod
from pilotfish.platform.local.runtime_pod import LocalPod, NetworkView, PodRunnerSettings
from pilotfish.platform.local.service_lb import Endpoint, ServicePort
from pilotfish.platform.local.users import MeshUsers
from tests.integration.platform.helpers import CLIENT, POD_PYTHON

HTTP_APP = (
    "import http.server, os, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = (os.environ['HOSTNAME'] + ' ' + str(os.getuid())).encode()\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "print('serving', flush=True)\n"
    "http.server.HTTPServer(('0.0.0.0', int(sys.argv[1])), H).serve_forever()\n"
)


def deployment(
    name: str, command: list[str], port: int | None = 8080, **spec: Any
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "command": command}
    if port:
        container["ports"] = [{"containerPort": port}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], **spec},
            },
        },
    }


@pytest.fixture
def make_pod(
    pod_network: PodNetwork,
    mesh_users: MeshUsers,
    tmp_path: Path,
) -> Iterator[Callable[..., LocalPod]]:
    pods: list[LocalPod] = []
    settings = PodRunnerSettings(
        log_dir=tmp_path / "pods",
        run_dir=tmp_path / "run",
        workdir=tmp_path,
        discovery_address="127.0.0.1:1",
        proxy_argv=("false",),
        pod_python=POD_PYTHON,
        restart_backoff_initial=0.1,
    )

    def make(
        dep: dict[str, Any],
        view: NetworkView | None = None,
        on_change: Callable[[LocalPod], None] = lambda p: None,
    ) -> LocalPod:
        body = new_pod(dep, f"{dep['metadata']['name']}-abc-{len(pods):05d}", "abc", False)
        pod = LocalPod(
            body,
            injected=False,
            network=pod_network,
            users=mesh_users,
            settings=settings,
            tools=IptablesTools.default(),
            view=view or NetworkView(),
            on_change=on_change,
        )
        pods.append(pod)
        pod.start()
        return pod

    try:
        yield make
    finally:
        for pod in pods:
            pod.stop()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out: {what}")


def test_pod_becomes_ready_when_its_app_listens_and_runs_as_the_app_user(
    make_pod: Callable[..., LocalPod],
    mesh_users: MeshUsers,
) -> None:
    changes = threading.Event()
    pod = make_pod(
        deployment("web", [POD_PYTHON, "-c", HTTP_APP, "8080"]), on_change=lambda p: changes.set()
    )
    wait_for(lambda: pod.report().ready, "pod ready")
    assert changes.is_set()
    report = pod.report()
    assert report.phase == "Running" and report.ip is not None
    assert [(c.name, c.ready, c.state) for c in report.containers] == [("app", True, "running")]
    assert http_status(pod.netns, 8080, "/") == 200
    out = run_in_pod(pod.netns, [POD_PYTHON, "-c", CLIENT, f"{report.ip}:8080"])
    assert out.returncode == 0
    # The app answers with its HOSTNAME (the pod name) and its uid (the app user).
    got = run(["curl", "-s", f"http://{report.ip}:8080/"]).stdout
    assert got == f"{pod.name} {mesh_users.app.uid}"
    info = (pod.log_dir / "pod.json").read_text()
    assert pod.netns in info


def test_hosts_file_and_vip_rules_follow_the_view(
    make_pod: Callable[..., LocalPod], tmp_path: Path
) -> None:
    backend = make_pod(deployment("backend", [POD_PYTHON, "-c", HTTP_APP, "8080"]))
    wait_for(lambda: backend.report().ready, "backend ready")
    ip = backend.report().ip
    assert ip is not None
    names = (ServiceName("backend", "default", "10.96.7.7"),)
    client = make_pod(
        deployment("client", [POD_PYTHON, "-c", "import time; time.sleep(1e9)"], port=None),
        NetworkView(names=names),
    )
    wait_for(lambda: client.report().ready, "client ready")
    hosts = Path("/etc/netns", client.netns, "hosts").read_text()
    assert "10.96.7.7\tbackend backend.default " in hosts

    def curl() -> str:
        res = run_in_pod(client.netns, ["curl", "-s", "-m", "2", "http://backend:80/"])
        return res.stdout

    assert curl() == ""  # a VIP without rules goes nowhere
    svc = ServicePort("default/backend", "10.96.7.7", 80, (Endpoint(ip, 8080),))
    client.set_view(NetworkView(names=names, endpoints=(svc,)))
    wait_for(lambda: curl().startswith(backend.name), "VIP balanced to the backend")
    client.set_view(NetworkView(names=(), endpoints=()))
    wait_for(
        lambda: "backend" not in Path("/etc/netns", client.netns, "hosts").read_text(),
        "name removed",
    )


def test_a_crashed_container_is_restarted(make_pod: Callable[..., LocalPod]) -> None:
    pod = make_pod(deployment("web", [POD_PYTHON, "-c", HTTP_APP, "8080"]))
    wait_for(lambda: pod.report().ready, "ready")
    first = pod.containers[0].proc
    assert first is not None
    first.stop(grace=0.1)
    wait_for(
        lambda: pod.report().containers[0].restarts == 1 and pod.report().ready,
        "restarted and ready again",
    )


def test_stop_kills_the_apps_and_removes_the_namespace(
    make_pod: Callable[..., LocalPod],
    pod_network: PodNetwork,
) -> None:
    pod = make_pod(deployment("web", [POD_PYTHON, "-c", HTTP_APP, "8080"]))
    wait_for(lambda: pod.report().ready, "ready")
    assert netns_pids(pod.netns)
    pod.stop()
    assert run(["ip", "netns", "list"]).stdout.count(pod.netns) == 0
    assert not Path("/etc/netns", pod.netns).exists()
    assert pod_network.pods() == {}
    assert not tcp_open(pod.netns, 8080)


def test_a_pod_without_a_command_stays_pending_with_the_reason(
    make_pod: Callable[..., LocalPod],
) -> None:
    pod = make_pod(deployment("broken", []))
    wait_for(lambda: pod.report().message != "", "reason reported")
    report = pod.report()
    assert report.phase == "Pending" and "command: Required value" in report.message
