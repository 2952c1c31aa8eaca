"""`pilotfish install --set profile=...`: the profile decides which parts run and the mesh
defaults, and installing again on the running mesh reconciles both."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from pilotfish.platform.local.runtime_mesh import load_mesh
from tests.e2e.conftest import REPO, Mesh, bring_up

pytestmark = pytest.mark.e2e

WEB = [
    {"apiVersion": "v1", "kind": "Namespace",
     "metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
     "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8000}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment",
     "metadata": {"name": "web", "namespace": "default"},
     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                           "spec": {"containers": [{
                               "name": "web", "ports": [{"containerPort": 8000}],
                               "command": ["python3", "-m", "http.server", "8000"]}]}}}},
]  # fmt: skip


def _status(mesh: Mesh) -> dict[str, str]:
    out = mesh.local("status", check=False).stdout
    return {
        name: line
        for line in out.splitlines()
        for name in ("control plane", "ingress gateway", "trace collector", "prometheus")
        if line.startswith(name)
    }


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _mesh_config(mesh: Mesh) -> dict[str, object]:
    return dict(json.loads(mesh.cli("get", "meshconfig", "-o", "json").stdout))


def _access_logged(mesh: Mesh, pod: str, path: str) -> bool:
    """Send one request from the pod through its sidecar; did its Envoy log it?"""
    mesh.local("exec", pod, "--", "curl", "-s", "-o", "/dev/null", f"http://web:8000/{path}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # Envoy flushes its access log every second
        log = mesh.local("logs", pod, "-c", "istio-proxy").stdout
        if f"GET /{path} " in log:
            return True
        time.sleep(0.5)
    return False


def test_minimal_runs_no_gateway_prometheus_or_collector_and_demo_reconciles(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("install")
    install = ("install", "-y", "--set")
    with bring_up(root, (*install, "profile=minimal")) as mesh:
        state = load_mesh(root / "state")
        assert state is not None
        assert "gateway_process" not in state and "prometheus" not in state
        assert "--no-trace-collector" in state["server"]["argv"]
        parts = _status(mesh)
        for name in ("ingress gateway", "trace collector", "prometheus"):
            assert "not enabled" in parts[name], parts
        assert not _answers(mesh.prometheus)
        assert not _answers(f"http://127.0.0.1:{mesh.trace_query_port}/api/services")
        assert mesh.local("status").returncode == 0  # left out is not unhealthy
        assert _mesh_config(mesh).get("accessLogFile", "") == ""

        manifest = root / "web.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": WEB}))
        mesh.cli("apply", "-f", str(manifest))
        pod = mesh.wait_pods_ready("default", 1, timeout=60)[0]["metadata"]["name"]
        assert not _access_logged(mesh, pod, "before-demo")

        # Installing demo on the running mesh starts what minimal left out and turns on its
        # mesh defaults, without touching the running pod.
        mesh.local(*install, "profile=demo", *mesh.up_args)
        state = load_mesh(root / "state")
        assert state is not None and state["gateway_process"]
        parts = _status(mesh)
        assert "healthy" in parts["ingress gateway"] and "healthy" in parts["trace collector"]
        assert _answers(f"http://127.0.0.1:{mesh.trace_query_port}/api/services")
        ready = state["gateway_readiness"]
        assert httpx.get(ready, timeout=5).status_code == 200  # the gateway's Envoy is ready
        config = _mesh_config(mesh)
        assert config["accessLogFile"] == "/dev/stdout"
        assert config["defaultConfig"]["tracing"]["sampling"] == 100.0  # type: ignore[index]
        assert mesh.wait_pods_ready("default", 1)[0]["metadata"]["name"] == pod
        assert _access_logged(mesh, pod, "after-demo")
        # demo runs Istio's egress gateway: a pod in istio-system.
        (egress,) = mesh.wait_pods_ready("istio-system", 1)
        assert egress["metadata"]["labels"]["istio"] == "egressgateway"
        # No Gateway selects it: its Envoy asks for no routes, and proxy-status says so.
        name = f"{egress['metadata']['name']}.istio-system"
        status = mesh.cli("proxy-status").stdout
        row = next(line for line in status.splitlines() if line.startswith(name))
        assert row.split()[2:6] == ["SYNCED", "SYNCED", "SYNCED", "NOT"], status
        assert f"{name}: RDS NOT SENT: its listeners use no routes" in status, status

        # And back: minimal stops the gateway again and turns access logs off.
        mesh.local(*install, "profile=minimal", *mesh.up_args)
        state = load_mesh(root / "state")
        assert state is not None and "gateway_process" not in state
        assert not _answers(ready)
        assert _mesh_config(mesh).get("accessLogFile", "") == ""
        assert not _access_logged(mesh, pod, "after-minimal")
        assert mesh.wait_pods_ready("istio-system", 0) == []  # the egress gateway is gone


def _prometheus_jobs(mesh: Mesh) -> set[str]:
    """Prometheus' query API: the jobs of the ``up`` series (none until its first scrape)."""
    body = httpx.get(f"{mesh.prometheus}/api/v1/query", params={"query": "up"}, timeout=5)
    assert body.json()["status"] == "success", body.text
    return {r["metric"]["job"] for r in body.json()["data"]["result"]}


def test_samples_addons_start_and_stop_parts_a_minimal_mesh_left_out(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """`kubectl apply -f samples/addons/prometheus.yaml`, as the tutorials write it."""
    root = tmp_path_factory.mktemp("addons")
    addons = REPO / "samples" / "addons"
    with bring_up(root, ("install", "-y", "--set", "profile=minimal")) as mesh:
        assert not _answers(mesh.prometheus) and not _answers(mesh.dashboard)

        out = mesh.cli("apply", "-f", str(addons / "prometheus.yaml")).stdout
        assert f"prometheus started: {mesh.prometheus}" in out, out
        deadline = time.monotonic() + 60
        while "istiod" not in _prometheus_jobs(mesh):  # the control plane, scraped
            assert time.monotonic() < deadline, _prometheus_jobs(mesh)
            time.sleep(1)
        assert "not enabled" not in _status(mesh)["prometheus"]

        out = mesh.cli("apply", "-f", str(addons / "kiali.yaml")).stdout
        assert f"dashboard started: {mesh.dashboard}" in out, out
        assert httpx.get(mesh.dashboard, timeout=5).status_code < 500
        installed = json.loads(
            mesh.cli("get", "iop", "installed-state", "-n", "istio-system", "-o", "json").stdout
        )["spec"]
        assert installed["profile"] == "minimal"
        assert installed["addonComponents"]["prometheus"]["enabled"] is True
        assert installed["addonComponents"]["kiali"]["enabled"] is True

        # delete -f of the whole directory stops what it names (and says so).
        out = mesh.cli("delete", "-f", str(addons)).stdout
        assert "prometheus stopped" in out and "dashboard stopped" in out, out
        assert "trace collector was not running" in out, out
        assert not _answers(mesh.prometheus) and not _answers(mesh.dashboard)
        assert "not enabled" in _status(mesh)["prometheus"]
