"""`pilotfish proxy-config` against a real control plane and real Envoys: each kind reads
the live Envoy's admin (config dump, /clusters, /stats, /logging), with istioctl's filters."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml

from tests.integration.harness import Mesh, Sidecar, eventually

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
"""


@pytest.fixture
def two_proxies(mesh: Mesh) -> Iterator[tuple[Mesh, Sidecar]]:
    mesh.apply(SERVICES)
    mesh.add("reviews-v1", {"app": "reviews", "version": "v1"}, mtls=True)
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None, mtls=True)
    eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "reviews reachable")
    yield mesh, client


def pc(mesh: Mesh, *args: str) -> str:
    return mesh.cp.cli("proxy-config", *args, check=True).stdout


def test_every_kind_reads_the_live_envoy(two_proxies: tuple[Mesh, Sidecar]) -> None:
    mesh, _ = two_proxies
    rows = [ln.split() for ln in pc(mesh, "cluster", "productpage.default").splitlines()]
    assert rows[0] == [
        "SERVICE",
        "FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "DESTINATION",
        "RULE",
    ]
    assert "xds-grpc" in {r[0] for r in rows}, "the Envoy's view includes static clusters"
    only = [ln.split() for ln in pc(mesh, "cluster", "productpage", "--fqdn", "reviews",
                                     "--subset", "v1").splitlines()[1:]]  # fmt: skip
    assert [r[:4] for r in only] == [
        ["reviews.default.svc.cluster.local", "9080", "v1", "outbound"]
    ]
    assert json.loads(pc(mesh, "cluster", "productpage", "--port", "9080", "--direction",
                         "outbound", "-o", "json"))  # fmt: skip

    listeners = pc(mesh, "listener", "reviews-v1.default", "--address", "0.0.0.0").splitlines()
    assert listeners[0].split() == ["ADDRESSES", "PORT", "MATCH", "DESTINATION"]
    assert len(listeners) > 1

    routes = json.loads(pc(mesh, "route", "productpage.default", "-o", "json"))
    names = {r["name"] for r in routes}
    assert "readiness" in names and len(names) > 1  # the static route and the outbound one
    name = min(names - {"readiness"})
    one = json.loads(pc(mesh, "route", "productpage.default", "--name", name, "-o", "json"))
    assert [r["name"] for r in one] == [name]

    endpoints = pc(mesh, "endpoint", "productpage.default", "--cluster",
                   "outbound|9080|v1|reviews.default.svc.cluster.local").splitlines()  # fmt: skip
    assert endpoints[0].split() == ["ENDPOINT", "STATUS", "OUTLIER", "CHECK", "CLUSTER"]
    assert len(endpoints) == 2 and "HEALTHY" in endpoints[1]

    secrets = yaml.safe_load(pc(mesh, "secret", "productpage.default", "-o", "yaml"))
    chain = next(s for s in secrets if s["type"] == "Cert Chain")
    assert chain["identity"] == ["spiffe://cluster.local/ns/default/sa/default"]
    assert chain["valid"] is True and chain["serial_number"]
    assert "PRIVATE KEY" not in pc(mesh, "secret", "productpage.default", "-o", "json")

    boot = json.loads(pc(mesh, "bootstrap", "productpage.default"))
    assert boot["node"]["id"].startswith("sidecar~")
    dump = json.loads(pc(mesh, "dump", "productpage.default"))
    assert any("ClustersConfigDump" in c["@type"] for c in dump["configs"])

    stats = pc(mesh, "stats", "productpage.default", "--filter", "^cluster_manager")
    assert "cluster_manager.cds.update_success" in stats
    assert "envoy_cluster_manager" in pc(mesh, "stats", "productpage.default", "-o", "prom")

    everything = pc(mesh, "all", "productpage.default")
    assert "SERVICE FQDN" in everything and "RESOURCE NAME" in everything


def test_saved_dump_and_control_plane_view(two_proxies: tuple[Mesh, Sidecar], tmp_path) -> None:  # type: ignore[no-untyped-def]
    mesh, _ = two_proxies
    saved = tmp_path / "dump.json"
    saved.write_text(pc(mesh, "dump", "productpage.default"))
    from_file = pc(mesh, "cluster", "productpage.default", "-f", str(saved), "--fqdn", "reviews")
    assert "reviews.default.svc.cluster.local" in from_file
    cp = pc(mesh, "cluster", "productpage.default", "--source", "control-plane")
    assert "reviews.default.svc.cluster.local" in cp and "xds-grpc" not in cp


def test_log_levels_change_live(two_proxies: tuple[Mesh, Sidecar]) -> None:
    mesh, _ = two_proxies
    out = pc(mesh, "log", "productpage.default", "--level", "rbac:debug")
    assert out.startswith("productpage.default:\nactive loggers:")
    levels = json.loads(pc(mesh, "log", "productpage.default", "-o", "json"))
    assert levels["rbac"] == "debug"
    pc(mesh, "log", "productpage.default", "--level", "warning")
    levels = json.loads(pc(mesh, "log", "productpage.default", "-o", "json"))
    assert set(levels.values()) == {"warning"}
    bad = mesh.cp.cli("proxy-config", "log", "productpage.default", "--level", "loud")
    assert bad.returncode != 0 and "loud" in bad.stderr


def test_errors_name_the_proxy(two_proxies: tuple[Mesh, Sidecar]) -> None:
    mesh, _ = two_proxies
    res = mesh.cp.cli("proxy-config", "cluster", "nobody.default")
    assert res.returncode != 0 and "nobody.default" in res.stderr and "not connected" in res.stderr
