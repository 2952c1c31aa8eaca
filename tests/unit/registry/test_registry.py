"""Registry: protocol selection, VIPs, services and endpoints from every source."""

from __future__ import annotations

import pytest

from pilotfish.api.node import NodeInfo
from pilotfish.registry import (
    ConnectedSidecars,
    Protocol,
    Registry,
    VipAllocator,
    VipSettings,
    changed_services,
    select_protocol,
)
from pilotfish.registry.vip import VipExhaustedError
from tests.unit.translate.fixtures import from_yaml, pod, service, stored


@pytest.mark.parametrize(
    ("name", "app_protocol", "expected"),
    [
        ("http", None, Protocol.HTTP),
        ("http-web", None, Protocol.HTTP),
        ("http2-x", None, Protocol.HTTP2),
        ("grpc-api", None, Protocol.GRPC),
        ("grpc-web-ui", None, Protocol.GRPC_WEB),
        ("tcp-db", None, Protocol.TCP),
        ("tls-x", None, Protocol.TLS),
        ("https-x", None, Protocol.HTTPS),
        ("mongo", None, Protocol.MONGO),
        ("web", None, Protocol.TCP),
        ("", None, Protocol.TCP),
        ("web", "http", Protocol.HTTP),
        ("http", "kubernetes.io/h2c", Protocol.HTTP2),
        ("http-x", "tcp", Protocol.TCP),
    ],
)
def test_protocol_selection(name: str, app_protocol: str | None, expected: Protocol) -> None:
    assert select_protocol(name, app_protocol) == expected


def test_vips_are_stable_and_persistable() -> None:
    a = VipAllocator()
    vip = a.allocate("reviews.default.svc.cluster.local")
    assert vip.startswith("10.96.")
    assert a.allocate("reviews.default.svc.cluster.local") == vip
    # Another control plane derives the same address from the hostname.
    assert VipAllocator().allocate("reviews.default.svc.cluster.local") == vip
    # A persisted map wins over the hash.
    b = VipAllocator(assigned={"reviews.default.svc.cluster.local": "10.96.9.9"})
    assert b.allocate("reviews.default.svc.cluster.local") == "10.96.9.9"
    assert a.dirty and a.assigned() == {"reviews.default.svc.cluster.local": vip}
    assert not a.dirty


def test_vip_collisions_take_the_next_free_address() -> None:
    small = VipAllocator(VipSettings(cidr="10.0.0.0/29"))  # 5 usable addresses
    got = {small.allocate(f"s{i}") for i in range(5)}
    assert len(got) == 5
    with pytest.raises(VipExhaustedError):
        small.allocate("one-too-many")
    freed = small.assigned()["s0"]
    small.release("s0")
    assert small.allocate("again") == freed  # the only free address left


def test_kubernetes_service_and_pods() -> None:
    docs = [
        service(
            "reviews",
            ports=[
                {"name": "http", "port": 9080, "targetPort": 8080},
                {"name": "tcp-admin", "port": 9000, "targetPort": "admin"},
            ],
        ),
        {
            **pod("reviews-1", "10.1.0.1", {"app": "reviews", "version": "v1"}),
            "spec": {
                "serviceAccountName": "reviews-sa",
                "containers": [{"ports": [{"name": "admin", "containerPort": 9901}]}],
            },
        },
        {
            **pod("reviews-2", "10.1.0.2", {"app": "reviews", "version": "v2"}),
            "status": {
                "podIP": "10.1.0.2",
                "conditions": [{"type": "Ready", "status": "False"}],
            },
        },
        pod("reviews-3", "10.1.0.3", {"app": "reviews"}, ns="other"),
        {**pod("no-ip", "", {"app": "reviews"}), "status": {}},
    ]
    snap = Registry().snapshot(stored(docs))
    svc = snap.services["reviews.default.svc.cluster.local"]
    assert (svc.name, svc.namespace, svc.selector) == ("reviews", "default", {"app": "reviews"})
    assert [(p.name, p.port, p.protocol) for p in svc.ports] == [
        ("http", 9080, Protocol.HTTP),
        ("tcp-admin", 9000, Protocol.TCP),
    ]
    assert svc.vip and svc.vip.startswith("10.96.")
    http = snap.endpoints_of(svc.hostname, 9080)
    assert [(e.address, e.port, e.healthy) for e in http] == [
        ("10.1.0.1", 8080, True),
        ("10.1.0.2", 8080, False),
    ]
    assert http[0].service_account == "reviews-sa" and http[0].labels["version"] == "v1"
    admin = snap.endpoints_of(svc.hostname, 9000)
    assert [(e.address, e.port) for e in admin] == [("10.1.0.1", 9901), ("10.1.0.2", 9000)]


def test_cluster_ip_is_kept() -> None:
    snap = Registry().snapshot(stored([service("a", clusterIP="10.96.7.7")]))
    assert snap.services["a.default.svc.cluster.local"].vip == "10.96.7.7"


def test_workload_entry_and_service_entry() -> None:
    docs = from_yaml(
        """
kind: ServiceEntry
metadata: {name: vm, namespace: apps}
spec:
  hosts: [vm.example, vm2.example]
  addresses: [10.200.0.5]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  location: MESH_INTERNAL
  resolution: STATIC
  workloadSelector: {labels: {app: vm}}
  endpoints:
  - {address: 10.2.0.1, ports: {http: 9090}, labels: {version: v1}}
---
kind: WorkloadEntry
metadata: {name: vm-1, namespace: apps}
spec: {address: 10.2.0.9, labels: {app: vm}, serviceAccount: vm-sa}
---
kind: ServiceEntry
metadata: {name: ext, namespace: apps}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
kind: ServiceEntry
metadata: {name: wild, namespace: apps}
spec:
  hosts: ["*.wiki.org"]
  ports: [{number: 80, name: http, protocol: HTTP}]
"""
    )
    snap = Registry().snapshot(stored(docs))
    vm = snap.services["vm.example"]
    assert vm.vip == "10.200.0.5" and vm.source_kind == "ServiceEntry" and not vm.mesh_external
    assert snap.services["vm2.example"].vip == "10.200.0.5"
    eps = snap.endpoints_of("vm.example", 80)
    assert [(e.address, e.port) for e in eps] == [("10.2.0.1", 9090), ("10.2.0.9", 8080)]
    assert eps[1].service_account == "vm-sa"
    ext = snap.services["api.example.com"]
    assert ext.mesh_external and ext.resolution == "DNS" and ext.ports[0].protocol == Protocol.TLS
    assert ext.vip is not None  # allocated so that TCP capture by address works
    assert [(e.address, e.port) for e in snap.endpoints_of("api.example.com", 443)] == [
        ("api.example.com", 443)
    ]
    assert snap.services["*.wiki.org"].vip is None


def test_connected_sidecar_in_none_mode_reports_its_inbound_port() -> None:
    sidecars = ConnectedSidecars()
    reg = Registry(sidecars=sidecars)
    objects = stored([service("reviews"), pod("reviews-1", "10.1.0.1", {"app": "reviews"})])
    node = NodeInfo(
        proxy_type="sidecar",
        ip="127.0.0.1",
        pod_name="reviews-1",
        namespace="default",
        labels={"app": "reviews"},
        interception_mode="NONE",
        inbound_ports={9080: 15555},
    )
    before = reg.snapshot(objects)
    sidecars.connected(node)
    sidecars.connected(node)  # an overlapping reconnect
    after = reg.snapshot(objects)
    eps = after.endpoints_of("reviews.default.svc.cluster.local", 9080)
    assert [(e.address, e.port, e.target_port, e.has_sidecar) for e in eps] == [
        ("127.0.0.1", 15555, 9080, True)
    ]
    assert changed_services(before, after) == {"reviews.default.svc.cluster.local"}
    sidecars.disconnected(node)
    assert len(reg.snapshot(objects).endpoints_of("reviews.default.svc.cluster.local", 9080)) == 1
    sidecars.disconnected(node)
    back = reg.snapshot(objects)
    assert back.endpoints_of("reviews.default.svc.cluster.local", 9080)[0].port == 9080
    assert changed_services(after, back) == {"reviews.default.svc.cluster.local"}


def test_a_sidecar_whose_pod_was_deleted_takes_no_new_requests() -> None:
    sidecars = ConnectedSidecars()
    reg = Registry(sidecars=sidecars)
    with_pod = stored([service("reviews"), pod("reviews-1", "10.1.0.1", {"app": "reviews"})])
    node = NodeInfo(proxy_type="sidecar", ip="10.1.0.1", pod_name="reviews-1",
                    namespace="default", labels={"app": "reviews"})  # fmt: skip
    sidecars.connected(node)
    host = "reviews.default.svc.cluster.local"
    assert [e.healthy for e in reg.snapshot(with_pod).endpoints_of(host, 9080)] == [True]
    # The Pod is deleted while its sidecar still runs (it drains): terminating, not healthy.
    gone = reg.snapshot(with_pod[:1])
    assert [e.healthy for e in gone.endpoints_of(host, 9080)] == [False]
    sidecars.disconnected(node)
    assert reg.snapshot(with_pod[:1]).endpoints_of(host, 9080) == ()
    # A sidecar that never had a Pod (another host's `pilotfish proxy`) serves as before.
    sidecars.connected(node)
    assert [e.healthy for e in reg.snapshot(with_pod[:1]).endpoints_of(host, 9080)] == [True]


def test_routers_are_not_workloads() -> None:
    sidecars = ConnectedSidecars()
    sidecars.connected(NodeInfo(proxy_type="router", ip="1.1.1.1", pod_name="gw", namespace="x"))
    assert sidecars.workloads() == []


def test_unchanged_snapshots_report_no_change_and_vips_survive() -> None:
    reg = Registry()
    objects = stored([service("a"), service("b")])
    one = reg.snapshot(objects)
    two = reg.snapshot(objects)
    assert changed_services(one, two) == set()
    assert (
        one.services["a.default.svc.cluster.local"].vip
        == two.services["a.default.svc.cluster.local"].vip
    )
    three = reg.snapshot(objects[:1])
    assert changed_services(two, three) == {"b.default.svc.cluster.local"}
    assert "b.default.svc.cluster.local" not in reg.vips.assigned()


def test_service_entry_vips_written_in_status_are_kept() -> None:
    """A fresh registry (a restarted control plane) takes the VIP the API server wrote in
    ``status.addresses`` and never hands it out again."""
    docs = from_yaml(
        """
kind: ServiceEntry
metadata: {name: ext, namespace: apps}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
status:
  addresses: [{value: 10.96.77.77, host: httpbin.org}]
"""
    )
    registry = Registry()
    snap = registry.snapshot(stored(docs))
    assert snap.services["httpbin.org"].vip == "10.96.77.77"
    assert registry.vips.allocate("httpbin.org") == "10.96.77.77"
    assert registry.vips.allocate("other.example.com") != "10.96.77.77"


def test_a_sidecar_connecting_rebuilds_the_endpoints_of_its_services_only() -> None:
    sidecars = ConnectedSidecars()
    reg = Registry(sidecars=sidecars)
    objects = stored(
        [service("a"), service("b"), pod("b-1", "10.1.0.2", {"app": "b"}),
         pod("b-2", "10.1.0.3", {"app": "b"})]
    )  # fmt: skip
    a, b = "a.default.svc.cluster.local", "b.default.svc.cluster.local"
    before = reg.snapshot(objects)
    node = NodeInfo(proxy_type="sidecar", ip="10.1.0.1", pod_name="a-1", namespace="default",
                    labels={"app": "a"})  # fmt: skip
    sidecars.connected(node)
    after = reg.snapshot(objects)
    # Service b's endpoints are the same tuple (what depends on them is carried over);
    # service a's are new and hold the sidecar.
    assert after.endpoints_of(b, 9080) is before.endpoints_of(b, 9080)
    assert [e.address for e in after.endpoints_of(a, 9080)] == ["10.1.0.1"]
    # The sidecar's workload is made once while it stays connected.
    assert sidecars.workloads()[0] is sidecars.workloads()[0]
    again = reg.snapshot(objects)
    assert again.endpoints_of(a, 9080) is after.endpoints_of(a, 9080)
    # A changed pod (a new revision) rebuilds its service's endpoints.
    moved = stored(
        [service("a"), service("b"), pod("b-2", "10.1.0.3", {"app": "b"}),
         pod("b-1", "10.1.0.9", {"app": "b"})]
    )  # fmt: skip
    assert [e.address for e in reg.snapshot(moved).endpoints_of(b, 9080)] == [
        "10.1.0.3", "10.1.0.9"
    ]  # fmt: skip
