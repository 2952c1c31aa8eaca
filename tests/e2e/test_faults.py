"""Faults the local mesh survives, under load through the ingress gateway (issue R table):

- R1: 100 VirtualService and DestinationRule changes (weight flips, subsets added and
  dropped, load balancer and connection pool edits, routes added and removed) applied back to
  back: no failed request, and the last change answers;
- R4: ``pilotfish rollout restart deployment/NAME`` rolls 3 replicas with no failed request;
- R5: with 4 s workload certificates (``proxy.istio.io/config`` ``SECRET_TTL``) and STRICT
  mTLS, sidecars renew several times, then ``pilotfish ca rotate-root`` replaces the mesh root
  in Istio's three steps (added, activated, old one retired), and pods started after it work:
  no failed request;
- R2: the control plane ``kill -9``-ed: no failed request while it is down, the runtime starts
  it again by itself and every proxy resyncs; ``up`` on a half-running mesh starts what is
  missing;
- R6: ``down`` after the server, a sidecar agent, a sidecar Envoy and the gateway's Envoy
  were killed leaves no process, namespace, link or rule (the runtime's crash is in
  ``test_lifecycle``).

How long the restart and the resync take is measured by ``bench/faults.py``, not asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.platform.local.runtime_mesh import load_mesh, process_tree
from pilotfish.testing import config_churn
from tests.e2e.conftest import Mesh, bring_up

pytestmark = pytest.mark.e2e

NS = "faults"
HOST = "faults.example.com"
APP: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace",
     "metadata": {"name": NS, "labels": {"istio-injection": "enabled"}}},
    {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
     "metadata": {"name": "faults-gateway", "namespace": "istio-system"},
     "spec": {"selector": {"istio": "ingressgateway"},
              "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                           "hosts": [HOST]}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "podinfo", "namespace": NS},
     "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "podinfo"}},
              "template": {"metadata": {"labels": {"app": "podinfo"}},
                           "spec": {"containers": [{
                               "name": "podinfod",
                               "command": ["python3", "samples/flagger/podinfo.py"],
                               "ports": [{"name": "http", "containerPort": 9898}],
                               "readinessProbe": {"httpGet": {"path": "/readyz",
                                                              "port": 9898}}}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo", "namespace": NS},
     "spec": {"selector": {"app": "podinfo"},
              "ports": [{"name": "http", "port": 9898, "targetPort": 9898}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
     "metadata": {"name": "podinfo", "namespace": NS},
     "spec": {"hosts": [HOST], "gateways": ["istio-system/faults-gateway"],
              "http": [{"route": [{"destination": {"host": "podinfo",
                                                   "port": {"number": 9898}}}]}]}},
]  # fmt: skip


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


class Load:
    """Requests through the ingress gateway in a loop, every answer counted."""

    def __init__(self, mesh: Mesh) -> None:
        self.url = f"{mesh.gateway}/"
        self.seen: Counter[int] = Counter()
        self.errors: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    r = http.get(self.url, headers={"Host": HOST})
                    self.seen[r.status_code] += 1
                    self.headers.append(dict(r.headers))
                    if r.status_code != 200:
                        self.errors.append(f"{time.strftime('%H:%M:%S')} {r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    self.seen[0] += 1
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
                time.sleep(0.02)

    @property
    def ok(self) -> int:
        return self.seen[200]

    def __enter__(self) -> Load:
        self.thread.start()
        wait_for(lambda: self.ok >= 5, "the first answers through the gateway")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)

    def failed(self) -> dict[int, int]:
        return {code: n for code, n in self.seen.items() if code != 200}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("faults")
    with bring_up(root) as m:
        (root / "app.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List",
                                                    "items": APP}))  # fmt: skip
        m.cli("apply", "-f", str(root / "app.json"))
        m.wait_pods_ready(NS, 3)
        yield m


def pod_names(mesh: Mesh) -> set[str]:
    return {p["metadata"]["name"] for p in mesh.pods(NS)}


def test_r4_rollout_restart_of_3_replicas_under_load_fails_no_request(mesh: Mesh) -> None:
    before = pod_names(mesh)
    with Load(mesh) as load:
        out = mesh.cli("rollout", "restart", "deployment/podinfo", "-n", NS).stdout
        assert out.strip() == "deployment.apps/podinfo restarted"
        status = mesh.cli("rollout", "status", "deployment/podinfo", "-n", NS).stdout
        assert 'deployment "podinfo" successfully rolled out' in status
        after = {p["metadata"]["name"] for p in mesh.wait_pods_ready(NS, 3)}
        assert after.isdisjoint(before)
        served = load.ok
        wait_for(lambda: load.ok >= served + 10, "answers from the new pods")
    assert load.failed() == {}, load.errors[:20]
    template = json.loads(mesh.cli("get", "deployment", "podinfo", "-n", NS, "-o", "json").stdout)
    annotations = template["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations


def _api(mesh: Mesh) -> httpx.Client:
    token = (mesh.data_dir / "admin-token").read_text().strip()
    return httpx.Client(base_url=f"http://127.0.0.1:{mesh.api_port}", timeout=30,
                        headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def _apply(api: httpx.Client, obj: dict[str, Any]) -> None:
    body = {"items": [obj], "sources": [], "namespace": None, "dryRun": False}
    resp = api.post("/apis/pilotfish.io/v1/apply", json=body)
    assert resp.status_code < 300, resp.text


def test_r1_100_route_and_destination_rule_changes_under_load_fail_no_request(
    mesh: Mesh,
) -> None:
    changes = list(config_churn.churn(
        100, name="podinfo", namespace=NS, host=HOST,
        gateways=["istio-system/faults-gateway"], service="podinfo", port=9898,
        labels={"app": "podinfo"}))  # fmt: skip
    kinds = Counter(c["kind"] for c in changes)
    assert len(changes) == 100 and kinds["DestinationRule"] == 40, kinds
    with _api(mesh) as api, Load(mesh) as load:
        for change in changes:
            _apply(api, change)
            # Longer than the push debounce's quiet period: most changes get a push of
            # their own, with requests in between.
            time.sleep(0.12)
        # The last change (a DestinationRule) came after the last VirtualService, #99.
        wait_for(lambda: any(h.get(config_churn.HEADER) == "99" for h in load.headers[-5:]),
                 "the last VirtualService at the gateway")  # fmt: skip
        mesh.cli("wait", "--for=synced")
        served = load.ok
        wait_for(lambda: load.ok >= served + 10, "answers after the last change")
        # Back to the module's route for the tests that follow.
        _apply(api, APP[-1])
        resp = api.delete(f"/apis/networking.istio.io/v1/namespaces/{NS}/destinationrules/podinfo")
        assert resp.status_code < 300, resp.text
        mesh.cli("wait", "--for=synced")
    assert load.failed() == {}, load.errors[:20]
    seen = {h.get(config_churn.HEADER) for h in load.headers}
    assert len(seen - {None}) > 1, seen  # requests went on between changes, not only at the end


def _signed(mesh: Mesh) -> int:
    """Certificates the CA signed for the podinfo sidecars so far (the server's log)."""
    log = (mesh.root / "state" / "logs" / "server.log").read_text(errors="replace")
    return log.count(f"for spiffe://cluster.local/ns/{NS}/sa/default ")


def _rolled(mesh: Mesh, before: set[str]) -> None:
    status = mesh.cli("rollout", "status", "deployment/podinfo", "-n", NS).stdout
    assert 'deployment "podinfo" successfully rolled out' in status
    after = {p["metadata"]["name"] for p in mesh.wait_pods_ready(NS, 3)}
    assert after.isdisjoint(before)


def test_r5_certificate_and_root_rotation_under_load_fail_no_request(mesh: Mesh) -> None:
    strict = {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
              "metadata": {"name": "default", "namespace": NS},
              "spec": {"mtls": {"mode": "STRICT"}}}  # fmt: skip
    short = json.loads(json.dumps(APP[2]))
    short["spec"]["template"]["metadata"]["annotations"] = {
        "proxy.istio.io/config": "proxyMetadata:\n  SECRET_TTL: 4s\n"
    }
    before = json.loads(mesh.cli("ca", "status", "-o", "json").stdout)
    with _api(mesh) as api:
        _apply(api, strict)  # only mTLS gets through: the certificates are in use
        names = pod_names(mesh)
        _apply(api, short)
        _rolled(mesh, names)
        with Load(mesh) as load:
            signed = _signed(mesh)
            # Each of the 3 sidecars renews at half-life (2 s): three times each at least.
            wait_for(lambda: _signed(mesh) >= signed + 9, "3 renewals of each sidecar")
            out = mesh.cli("ca", "rotate-root").stdout
            print(out)
            assert "step 1/3 add" in out and "step 3/3 retire" in out, out
            assert "root rotation done" in out, out
            status = json.loads(mesh.cli("ca", "status", "-o", "json").stdout)
            new = status["signingRoot"]
            assert new != before["signingRoot"]
            assert [r["fingerprint"] for r in status["roots"]] == [new]
            # The proxies there now (those of pods gone shortly before are still listed).
            workloads = [w for w in status["workloads"] if w["watching"] or w["connected"]]
            assert len(workloads) == 4, workloads  # 3 sidecars and the gateway
            assert all(w["trusts"] == [new] and w["signedBy"] == new for w in workloads)
            served = load.ok
            wait_for(lambda: load.ok >= served + 10, "answers after the rotation")
            # Pods started after the rotation trust the new root (and are trusted).
            restored = pod_names(mesh)
            _apply(api, APP[2])
            _rolled(mesh, restored)
            served = load.ok
            wait_for(lambda: load.ok >= served + 10, "answers from the new pods")
        resp = api.delete(f"/apis/security.istio.io/v1/namespaces/{NS}/peerauthentications/default")
        assert resp.status_code < 300, resp.text
        mesh.cli("wait", "--for=synced")
    assert load.failed() == {}, load.errors[:20]


def _proxies(mesh: Mesh) -> list[dict[str, Any]]:
    res = mesh.cli("proxy-status", "-o", "json", check=False)
    if res.returncode != 0:
        return []
    items: list[dict[str, Any]] = json.loads(res.stdout)
    return items if isinstance(items, list) else list(items.get("items") or [])


def test_r2_control_plane_killed_under_load_restarts_and_proxies_resync(mesh: Mesh) -> None:
    state_dir = mesh.root / "state"
    state = load_mesh(state_dir)
    assert state is not None
    killed = int(state["server"]["pid"])
    with Load(mesh) as load:
        os.kill(killed, signal.SIGKILL)
        served = load.ok
        # Envoys keep their config: requests go on while no control plane runs.
        wait_for(lambda: load.ok >= served + 20, "answers while the control plane is down")

        def restarted() -> bool:
            now = load_mesh(state_dir) or {}
            entry = now.get("server") or {}
            if int(entry.get("pid") or killed) == killed:
                return False
            try:
                return httpx.get(f"http://127.0.0.1:{mesh.api_port}/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(restarted, "the runtime restarting the control plane")
        assert "restarted by the pod runtime" in (state_dir / "logs" / "server.log").read_text()
        # Every proxy (3 sidecars and the gateway) reconnects and takes its config again.
        wait_for(lambda: len(_proxies(mesh)) == 4, "4 proxies connected again")
        mesh.cli("wait", "--for=synced")
        # A change made after the restart reaches the gateway.
        vs = json.loads(json.dumps(APP[-1]))
        vs["spec"]["http"][0]["headers"] = {"response": {"set": {"x-resynced": "yes"}}}
        (mesh.root / "vs.json").write_text(json.dumps(vs))
        mesh.cli("apply", "-f", str(mesh.root / "vs.json"))
        wait_for(lambda: any(h.get("x-resynced") == "yes" for h in load.headers[-5:]),
                 "the new route at the gateway")  # fmt: skip
    assert load.failed() == {}, load.errors[:20]
    assert mesh.local("status").returncode == 0


def test_up_on_a_half_running_mesh_starts_what_is_missing(mesh: Mesh) -> None:
    state = load_mesh(mesh.root / "state")
    assert state is not None
    gateway = int(state["gateway_process"]["pid"])
    os.kill(gateway, signal.SIGKILL)
    wait_for(lambda: mesh.local("status", check=False).returncode == 1, "status: gateway down")
    res = mesh.local("up", *mesh.up_args)
    assert "starting" in res.stdout + res.stderr and "gateway" in res.stdout + res.stderr
    again = load_mesh(mesh.root / "state")
    assert again is not None and int(again["gateway_process"]["pid"]) != gateway
    assert again["server"]["pid"] == state["server"]["pid"]  # what ran was kept
    assert mesh.local("status").returncode == 0
    with Load(mesh) as load:
        served = load.ok
        wait_for(lambda: load.ok >= served + 10, "answers through the new gateway")
    assert load.failed() == {}, load.errors[:20]


def _pod_processes(pod: str) -> dict[str, int]:
    """The sidecar agent's and its Envoy's pids of a pod: the Envoy whose bootstrap is in the
    pod's work directory (``<run dir>/<pod>.<namespace>/``), and its parent, the agent (an
    agent forked by the runtime's zygote has no ``--pod-name`` in its command line)."""
    found: dict[str, int] = {}
    marker = f"/{pod}.{NS}/".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if b"envoy" in cmd[0] and any(marker in arg for arg in cmd):
            found["envoy"] = int(proc.name)
            found["agent"] = int(stat.rsplit(")", 1)[1].split()[1])
        elif b"--pod-name" in cmd and cmd[cmd.index(b"--pod-name") + 1] == pod.encode():
            found.setdefault("agent", int(proc.name))
    return found


def _envoy_under(pid: int) -> list[int]:
    out = []
    for child in process_tree([pid]):
        with contextlib.suppress(OSError):
            if b"envoy" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]:
                out.append(child)
    return out


def test_r6_down_after_crashes_of_every_kind_leaves_nothing(mesh: Mesh) -> None:
    state = load_mesh(mesh.root / "state")
    assert state is not None
    first, second = sorted(pod_names(mesh))[:2]
    agent = _pod_processes(first).get("agent")
    envoy = _pod_processes(second).get("envoy")
    assert agent and envoy, (_pod_processes(first), _pod_processes(second))
    gateway_envoy = _envoy_under(int(state["gateway_process"]["pid"]))
    assert gateway_envoy
    for pid in (agent, envoy, gateway_envoy[0], int(state["server"]["pid"])):
        os.kill(pid, signal.SIGKILL)
    mesh.local("down")
    assert mesh.leftovers() == []
