"""On-demand clusters over Delta xDS: left out of the wildcard set, sent when asked for by name,
kept up to date once held; a SotW stream gets them all."""

from __future__ import annotations

from pilotfish.xds.connection import DeltaResponse, ProxyConnection
from pilotfish.xds.push import PushRequest
from pilotfish.xds.resources import Generated, ResourceCache, Snapshot, build_snapshot
from tests.unit.xds import builders as b
from tests.unit.xds.fake import FakeEnvoy, names
from tests.unit.xds.fake import delta as delta_req

PUSH = PushRequest.of("test")


def snapshot(ports: dict[str, int], on_demand: set[str], cache: ResourceCache) -> Snapshot:
    resources = b.resources(
        clusters={name: [("127.0.0.1", port)] for name, port in ports.items()},
        listeners={"http": (8000, "r")},
        routes={"r": b.route_config("r", "a")},
    )
    return build_snapshot(Generated(resources, {b.CLUSTER_TYPE: frozenset(on_demand)}), cache)


def connect(delta: bool, cache: ResourceCache) -> tuple[ProxyConnection, FakeEnvoy]:
    conn = ProxyConnection("1", b.node(), delta=delta, ack_timeout=5.0)
    conn.set_target(snapshot({"a": 1, "b": 2, "c": 3}, {"b", "c"}, cache))
    return conn, FakeEnvoy(conn)


def test_delta_wildcard_leaves_on_demand_clusters_out_until_asked_by_name() -> None:
    cache = ResourceCache()
    conn, envoy = connect(True, cache)
    [cds] = envoy.request(b.CLUSTER_TYPE)
    assert names(cds) == ["a"]
    assert envoy.ack(cds) == []
    # Envoy's on-demand CDS asks for "b" by name on the same (wildcard) subscription.
    [answer] = conn.handle_request(delta_req(b.CLUSTER_TYPE, subscribe=["b"]))
    assert names(answer) == ["b"]
    envoy.ack(answer)
    assert set(conn.types[b.CLUSTER_TYPE].have) == {"a", "b"}

    # A cluster that does not exist is answered as removed: the request waiting for it
    # goes on at once.
    [missing] = conn.handle_request(delta_req(b.CLUSTER_TYPE, subscribe=["nope"]))
    assert isinstance(missing, DeltaResponse)
    assert list(missing.message().removed_resources) == ["nope"] and names(missing) == []
    envoy.ack(missing)

    # A held on-demand cluster whose service goes away is removed (once routes are in).
    out = envoy.sync(conn.begin_push(snapshot({"a": 1, "c": 3}, {"c"}, cache), PUSH))
    cds_out = [r for r in out if r.type_url == b.CLUSTER_TYPE]
    assert isinstance(cds_out[-1], DeltaResponse)
    assert list(cds_out[-1].message().removed_resources) == ["b"]
    assert set(conn.types[b.CLUSTER_TYPE].have) == {"a"}


def test_sotw_gets_every_cluster() -> None:
    _, envoy = connect(False, ResourceCache())
    [cds] = envoy.request(b.CLUSTER_TYPE)
    assert sorted(names(cds)) == ["a", "b", "c"]


def test_a_scoped_update_keeps_or_replaces_the_on_demand_names() -> None:
    from pilotfish.xds.resources import update_snapshot

    cache = ResourceCache()
    before = snapshot({"a": 1, "b": 2}, {"b"}, cache)
    routes_only = b.resources(clusters={}, routes={"r": b.route_config("r", "a")})
    kept = update_snapshot(before, routes_only, {b.ROUTE_TYPE: None}, cache)
    assert kept.on_demand == {b.CLUSTER_TYPE: frozenset({"b"})}
    plain = b.resources(clusters={"a": [("127.0.0.1", 1)], "b": [("127.0.0.1", 2)]})
    replaced = update_snapshot(before, plain, {b.CLUSTER_TYPE: None}, cache)
    assert replaced.on_demand == {}
