"""The Sidecar resource with pods: real capture (iptables REDIRECT), real Envoys, curl in pods.

A ``sleep`` client and a ``web`` app in ``default``, a ``far`` app in ``other``. ``web``'s
Service targets port 9090 while the app listens on 8080: a Sidecar ``ingress`` with
``defaultEndpoint: 127.0.0.1:8080`` makes it reachable. A namespace-wide Sidecar with egress
``./*`` + ``istio-system/*`` takes ``far`` out of the client's config: under ALLOW_ANY the
call leaves through PassthroughCluster (the VIP is not a real address without a sidecar
cluster: it fails), while an unregistered destination (a pod address) is reached; under the
Sidecar's REGISTRY_ONLY the call gets Istio's 502 and the pod address is blocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Mesh, bring_up

pytestmark = pytest.mark.e2e


def deployment(name: str, ns: str, command: list[str], port: int | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "command": command}
    if port:
        container["ports"] = [{"containerPort": port}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def service(name: str, ns: str, target: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": target}],
        },
    }


def sidecar(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


SERVE = ["python3", "-m", "http.server", "8080"]
LOCAL_ONLY = {"egress": [{"hosts": ["./*", "istio-system/*"]}]}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with bring_up(tmp_path_factory.mktemp("sidecar")) as m:
        m.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
        m.cli("create", "namespace", "other")
        m.cli("label", "namespace", "other", "istio-injection=enabled", "--overwrite")
        yield m


def apply(mesh: Mesh, tmp: Path, *docs: dict[str, Any]) -> None:
    path = tmp / "docs.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(docs)}))
    mesh.cli("apply", "-f", str(path))


def curl(mesh: Mesh, pod: str, url: str) -> str:
    res = mesh.local(
        "exec", pod, "--", "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", url,
        check=False,
    )  # fmt: skip
    return res.stdout.strip() or "000"


def settle(check: Any, what: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is True:
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def test_sidecar_scopes_egress_and_maps_ingress_in_pods(mesh: Mesh, tmp_path: Path) -> None:
    apply(
        mesh,
        tmp_path,
        deployment("sleep", "default", ["python3", "-c", "import time; time.sleep(1e9)"], None),
        deployment("web", "default", SERVE, 8080),
        service("web", "default", 9090),
        deployment("far", "other", SERVE, 8080),
        service("far", "other", 8080),
    )
    mesh.wait_pods_ready("default", 2)
    (far_pod,) = mesh.wait_pods_ready("other", 1)
    far_ip = far_pod["status"]["podIP"]
    sleep = mesh.pod_named("sleep")
    far, web, direct = "http://far.other/", "http://web/", f"http://{far_ip}:8080/"

    settle(lambda: curl(mesh, sleep, far) == "200" or curl(mesh, sleep, far), "far reachable")
    # web's Service targets 9090, where nothing listens...
    assert curl(mesh, sleep, web) != "200"
    # ...until its Sidecar maps ingress port 9090 to the app's 8080.
    ingress = {
        "workloadSelector": {"labels": {"app": "web"}},
        "ingress": [
            {
                "port": {"number": 9090, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:8080",
            }
        ],
    }
    apply(mesh, tmp_path, sidecar("web", ingress))
    settle(lambda: curl(mesh, sleep, web) == "200" or curl(mesh, sleep, web), "ingress mapping")

    # Egress limited to the client's namespace (ALLOW_ANY, the mesh default).
    apply(mesh, tmp_path, sidecar("default", LOCAL_ONLY))

    def scoped() -> bool | str:
        clusters = mesh.local(
            "exec", sleep, "-c", "istio-proxy", "--", "curl", "-s",
            "http://127.0.0.1:15000/clusters", check=False,
        ).stdout  # fmt: skip
        return "far.other.svc.cluster.local" not in clusters and "web.default" in clusters

    settle(scoped, "far's clusters gone from the client's Envoy")
    assert curl(mesh, sleep, far) != "200"  # passed through to a VIP nothing answers on
    assert curl(mesh, sleep, web) == "200"
    assert curl(mesh, sleep, direct) == "200"  # unregistered, allowed: passthrough

    # REGISTRY_ONLY in the Sidecar, while the mesh stays ALLOW_ANY.
    apply(mesh, tmp_path, sidecar("default", {**LOCAL_ONLY,
          "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}))  # fmt: skip
    settle(lambda: curl(mesh, sleep, far) == "502" or curl(mesh, sleep, far), "block_all 502")
    assert curl(mesh, sleep, direct) != "200"  # blackholed
    assert curl(mesh, sleep, web) == "200"
    # The far pod (no Sidecar in "other") still reaches web across namespaces.
    far_name = far_pod["metadata"]["name"]
    res = mesh.local(
        "exec", far_name, "-n", "other", "--", "curl", "-s", "-m", "5", "-o", "/dev/null",
        "-w", "%{http_code}", "http://web.default/", check=False,
    )  # fmt: skip
    assert res.stdout.strip() == "200"


def mesh_config(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "on-demand", "namespace": "istio-system"},
        "spec": {"meshConfig": spec},
    }


def route_hosts(mesh: Mesh, pod: str, port: int = 80) -> set[str]:
    """The virtual hosts of the pod's outbound route configuration ``port``, as Envoy holds
    them."""
    dump = mesh.local(
        "exec", pod, "-c", "istio-proxy", "--", "curl", "-s",
        "http://127.0.0.1:15000/config_dump?resource=dynamic_route_configs",
    ).stdout  # fmt: skip
    out: set[str] = set()
    for item in json.loads(dump)["configs"]:
        config = item["route_config"]
        if config["name"] == str(port):
            out |= {v["name"] for v in config.get("virtual_hosts", [])}
    return out


def test_on_demand_virtual_hosts_in_pods(mesh: Mesh, tmp_path: Path) -> None:
    """With ``onDemandClusters``, a pod's sidecar starts with no service's virtual host on
    port 80; a call to a service fetches its virtual host and cluster; a host no service has
    (a pod outside the mesh, on 8080 where a Service without pods gives the client a route
    config) gets ALLOW_ANY's passthrough, then, when the mesh turns REGISTRY_ONLY, 502
    without Envoy asking again."""
    # The namespace-wide Sidecar goes (web's, mapping its ingress port, stays).
    mesh.cli("delete", "sidecar", "default", "-n", "default", check=False)
    mesh.cli("create", "namespace", "plain")  # no injection: outside the mesh
    apply(
        mesh,
        tmp_path,
        mesh_config({"onDemandClusters": True}),
        deployment("bare", "plain", SERVE, 8080),
        {**service("alt", "default", 8080), "spec": {"selector": {"app": "alt"},
         "ports": [{"name": "http", "port": 8080}]}},
    )  # fmt: skip
    (bare,) = mesh.wait_pods_ready("plain", 1)
    bare_ip = bare["status"]["podIP"]
    bare_url = f"http://{bare_ip}:8080/"
    # A new client pod starts under the setting.
    mesh.cli("delete", "pod", mesh.pod_named("sleep"))
    settle(lambda: len(mesh.wait_pods_ready("default", 2)) == 2, "a new sleep pod")
    sleep = mesh.pod_named("sleep")
    settle(lambda: route_hosts(mesh, sleep) == {"80/on-demand"} or route_hosts(mesh, sleep),
           "only the placeholder")  # fmt: skip

    assert curl(mesh, sleep, "http://far.other/") == "200"
    assert curl(mesh, sleep, "http://web/") == "200"
    assert route_hosts(mesh, sleep) == {
        "80/on-demand",
        "80/far.other.svc.cluster.local:80",
        "80/web.default.svc.cluster.local:80",
    }
    # An address no service has: the fallback made for that host, passthrough.
    assert route_hosts(mesh, sleep, 8080) == {"8080/on-demand"}
    assert curl(mesh, sleep, bare_url) == "200"
    assert route_hosts(mesh, sleep, 8080) == {"8080/on-demand", f"8080/{bare_ip}:8080"}

    apply(mesh, tmp_path, mesh_config({"onDemandClusters": True,
          "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}))  # fmt: skip
    settle(lambda: curl(mesh, sleep, bare_url) == "502" or curl(mesh, sleep, bare_url),
           "the same host blocked")  # fmt: skip
    assert curl(mesh, sleep, "http://web/") == "200"
    mesh.cli("delete", "istiooperator", "on-demand", "-n", "istio-system")
