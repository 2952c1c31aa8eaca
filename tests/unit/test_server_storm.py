"""Endpoint changes during a connection storm: proxies connecting close together share one
push context, and the push each change asks for brings what their first config lacked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2

from pilotfish.api.node import NodeInfo
from pilotfish.config.store.base import Put
from pilotfish.config.store.memory import MemoryStore
from pilotfish.server import Mesh, ServerSettings
from pilotfish.xds import PushRequest
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    Snapshot,
    update_snapshot,
)

CLUSTER = "outbound|80||a.default.svc.cluster.local"


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
    }


def sidecar(name: str, app: str, ip: str) -> NodeInfo:
    return NodeInfo(
        proxy_type="sidecar", ip=ip, pod_name=name, namespace="default", labels={"app": app}
    )


def addresses(mesh: Mesh, node: NodeInfo) -> set[str]:
    cla = mesh.generate_types(node, frozenset({ENDPOINT_TYPE}))[ENDPOINT_TYPE][CLUSTER]
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    return {
        e.endpoint.address.socket_address.address for lb in cla.endpoints for e in lb.lb_endpoints
    }


def test_a_proxy_generated_from_a_context_without_the_newest_endpoint_gets_it_pushed(
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    store.commit([Put(service("a")), Put(service("b"))])
    settings = ServerSettings.build(
        data_dir=tmp_path, listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None
    )
    mesh = Mesh(store, settings)
    mesh.endpoint_staleness = 3600.0  # the window never closes within the test
    b, c = sidecar("b-1", "b", "10.0.0.2"), sidecar("c-1", "b", "10.0.0.3")
    mesh.registry.sidecars.connected(b)
    mesh.source.invalidate(endpoints_only=True)
    mesh.prepare()
    assert mesh.plan(PushRequest.of("endpoint", full=False), [b]) == {b.node_id: None}
    builds = mesh.source.builds

    # A sidecar of service a connects; c connects right after and is generated from the
    # context before (within the staleness window): no rebuild, no endpoint of a yet.
    mesh.registry.sidecars.connected(sidecar("a-1", "a", "10.0.0.1"))
    mesh.source.invalidate(endpoints_only=True)
    assert addresses(mesh, c) == set()
    assert mesh.source.builds == builds

    # The push the change asked for: prepared before the proxies are listed, it reaches c
    # (and b) with the load assignments of service a.
    mesh.prepare()
    plans = mesh.plan(PushRequest.of("endpoint", full=False), [b, c])
    assert set(plans) == {b.node_id, c.node_id}
    for scope in plans.values():
        assert scope is not None and CLUSTER in (scope.get(ENDPOINT_TYPE) or ())
    assert addresses(mesh, c) == {"10.0.0.1"}


def test_config_changes_are_never_served_stale(tmp_path: Path) -> None:
    store = MemoryStore()
    store.commit([Put(service("b"))])
    settings = ServerSettings.build(
        data_dir=tmp_path, listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None
    )
    mesh = Mesh(store, settings)
    mesh.endpoint_staleness = 3600.0
    c = sidecar("c-1", "b", "10.0.0.3")
    mesh.source.current()
    mesh.registry.sidecars.connected(sidecar("a-1", "a", "10.0.0.1"))
    mesh.source.invalidate(endpoints_only=True)
    store.commit([Put(service("a"))])
    mesh.source.invalidate()
    assert addresses(mesh, c) == {"10.0.0.1"}


async def test_sidecars_connected_before_a_restart_keep_their_endpoints_for_the_grace(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import asyncio

    import pilotfish.server

    store = MemoryStore()
    store.commit([Put(service("a"))])
    settings = ServerSettings.build(
        data_dir=tmp_path, listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None
    )
    before = Mesh(store, settings)
    explicit = NodeInfo(
        proxy_type="sidecar", ip="10.0.0.1", pod_name="a-1", namespace="default",
        labels={"app": "a"}, interception_mode="NONE", inbound_ports={80: 15080},
    )  # fmt: skip
    gone = NodeInfo(
        proxy_type="sidecar", ip="10.0.0.2", pod_name="a-2", namespace="default",
        labels={"app": "a"}, interception_mode="NONE", inbound_ports={80: 15080},
    )  # fmt: skip
    captured = NodeInfo(
        proxy_type="sidecar", ip="10.0.0.3", pod_name="a-3", namespace="default",
        labels={"app": "a"}, interception_mode="REDIRECT",
    )  # fmt: skip
    for node in (explicit, gone, captured):
        before.registry.sidecars.connected(node)
    before._record_sidecars()

    # The control plane restarts on the same data directory: the sidecars whose endpoint
    # exists only through their connection are endpoints from the start (a captured one has
    # its Pod for that), for the grace; one that reconnects meanwhile stays.
    monkeypatch.setattr(pilotfish.server, "SIDECAR_RESTART_GRACE_S", 0.05)
    after = Mesh(store, settings)
    after.endpoint_staleness = 0.0
    after._restore_sidecars()
    client = sidecar("client-1", "client", "10.0.0.9")
    assert addresses(after, client) == {"10.0.0.1", "10.0.0.2"}
    after._connected(explicit)  # it reconnects within the grace
    await asyncio.sleep(0.2)
    after.source.invalidate(endpoints_only=True)
    assert addresses(after, client) == {"10.0.0.1"}


def _bytes(resources: Any) -> dict[str, dict[str, bytes]]:
    return {
        t: {n: m.SerializeToString(deterministic=True) for n, m in by_name.items()}
        for t, by_name in resources.items()
    }


def test_sidecars_of_one_view_share_the_generation_of_an_endpoint_push(tmp_path: Path) -> None:
    store = MemoryStore()
    store.commit([Put(service("a")), Put(service("b"))])
    settings = ServerSettings.build(
        data_dir=tmp_path, listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None
    )
    mesh = Mesh(store, settings)
    one, two = sidecar("b-1", "b", "10.0.0.2"), sidecar("b-2", "b", "10.0.0.3")
    other_ns = NodeInfo(
        proxy_type="sidecar", ip="10.0.0.4", pod_name="x-1", namespace="other",
        labels={"app": "x"},
    )  # fmt: skip
    names = frozenset({CLUSTER})
    scope = {CLUSTER_TYPE: names, ENDPOINT_TYPE: names}
    first, second = mesh.scoped_view(one, scope), mesh.scoped_view(two, scope)
    assert first is not None and second is not None
    assert first[0] == second[0]  # one key: one generation and update for both
    assert _bytes(first[1]())[ENDPOINT_TYPE][CLUSTER] == _bytes(second[1]())[ENDPOINT_TYPE][CLUSTER]
    assert _bytes(first[1]()) == _bytes(mesh.generate_scope(two, scope))
    other = mesh.scoped_view(other_ns, scope)
    assert other is not None and other[0] != first[0]  # another namespace, another view
    # Not sure (their own generation): listeners, every cluster, inbound names, a patch.
    assert mesh.scoped_view(one, {**scope, LISTENER_TYPE: None}) is None
    assert mesh.scoped_view(one, {CLUSTER_TYPE: None}) is None
    inbound = frozenset({"inbound|80||"})
    assert mesh.scoped_view(one, {CLUSTER_TYPE: inbound, ENDPOINT_TYPE: inbound}) is None
    store.commit([Put(envoy_filter("b"))])
    mesh.source.invalidate()
    assert mesh.scoped_view(one, scope) is None
    assert mesh.scoped_view(sidecar("a-1", "a", "10.0.0.1"), scope) is not None


def envoy_filter(app: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": {"name": f"patch-{app}", "namespace": "default"},
        "spec": {
            "workloadSelector": {"labels": {"app": app}},
            "configPatches": [
                {
                    "applyTo": "CLUSTER",
                    "match": {"context": "SIDECAR_OUTBOUND"},
                    "patch": {"operation": "MERGE", "value": {"connect_timeout": "7s"}},
                }
            ],
        },
    }


def test_shared_endpoint_updates_give_each_proxy_what_its_own_would(tmp_path: Path) -> None:
    # Sidecars connect in turn (each one an endpoint); every few, an endpoint push reaches
    # the connected ones. Each proxy's snapshot from the shared update is the one its own
    # generation and update would give, and at the end what a full generation gives; the
    # proxies that are up to date share their maps, so a push updates them once.
    store = MemoryStore()
    store.commit([Put(service(f"s{i}")) for i in range(6)])
    settings = ServerSettings.build(
        data_dir=tmp_path, listen="127.0.0.1:1", xds_listen="127.0.0.1:2", store_url=None
    )
    mesh = Mesh(store, settings)
    mesh.endpoint_staleness = 0.0
    server = mesh.xds
    nodes = [sidecar(f"p{i}", f"s{i % 6}", f"10.0.0.{i + 1}") for i in range(15)]
    mesh.prepare()
    mesh.plan(PushRequest.of("endpoint", full=False), [])
    shared: dict[str, Snapshot] = {}
    own: dict[str, Snapshot] = {}
    connected: list[NodeInfo] = []
    updates: list[int] = []
    for k, node in enumerate(nodes):
        shared[node.node_id] = own[node.node_id] = server._build(node)
        mesh._connected(node)
        mesh.source.invalidate(endpoints_only=True)
        connected.append(node)
        if k % 4 != 3 and k != len(nodes) - 1:
            continue
        mesh.prepare()
        plans = mesh.plan(PushRequest.of("endpoint", full=False), connected)
        server._shared.clear()
        for n in connected:
            scope = plans.get(n.node_id)
            assert scope is not None  # every connected proxy sees the new endpoints
            shared[n.node_id] = server._build(n, shared[n.node_id], scope)
            resources = mesh.generate_scope(n, scope)
            own[n.node_id] = update_snapshot(own[n.node_id], resources, scope, server.cache)
            assert _hashes(shared[n.node_id]) == _hashes(own[n.node_id]), n.node_id
        updates.append(len(server._shared))
    for n in connected:
        assert _hashes(shared[n.node_id]) == _hashes(server._build(n)), n.node_id
    # One update for the proxies that were up to date after the last push (with the first
    # proxy to connect after it: its first config is the same), one for each newer one.
    assert updates == [4, 4, 4, 3]


def _hashes(snapshot: Snapshot) -> dict[str, dict[str, str]]:
    return {t: snapshot.hashes(t) for t in snapshot.entries}
