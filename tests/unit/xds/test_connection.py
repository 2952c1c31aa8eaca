"""ProxyConnection driven by fake Envoy requests: ordering, NACKs, SotW vs Delta."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.connection import DeltaResponse, ProxyConnection
from pilotfish.xds.protocol import Have
from pilotfish.xds.push import PushRequest
from pilotfish.xds.resources import ResourceCache, Snapshot, build_snapshot
from tests.unit.xds import builders as b
from tests.unit.xds.fake import FakeEnvoy, contents, kinds, names, snapshot, sotw
from tests.unit.xds.fake import delta as delta_req

MODES = [pytest.param(False, id="sotw"), pytest.param(True, id="delta")]
PUSH = PushRequest.of("test")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def connected(delta: bool, clock: Clock | None = None) -> tuple[ProxyConnection, FakeEnvoy]:
    conn = ProxyConnection("1", b.node(), delta=delta, ack_timeout=5.0, monotonic=clock or Clock())
    conn.set_target(snapshot({"a": 1, "b": 2}, "a"))
    envoy = FakeEnvoy(conn)
    envoy.connect()
    assert not conn.busy
    return conn, envoy


@pytest.mark.parametrize("delta", MODES)
def test_initial_sync_answers_every_type_and_is_synced(delta: bool) -> None:
    conn, _ = connected(delta)
    status = conn.status()
    assert status.protocol == ("Delta" if delta else "SotW")
    assert [status.state(k) for k in ("CDS", "EDS", "LDS", "RDS")] == ["SYNCED"] * 4
    assert status.synced
    assert set(conn.types[b.CLUSTER_TYPE].have) == {"a", "b"}


@pytest.mark.parametrize("delta", MODES)
def test_route_waits_for_cluster_ack_and_removal_waits_for_route_ack(delta: bool) -> None:
    conn, envoy = connected(delta)
    # Route moves from a to the new cluster c; a goes away.
    out = conn.begin_push(snapshot({"b": 2, "c": 3}, "c"), PUSH)
    if delta:
        # The new cluster's endpoints go right behind it, before Envoy asks for them.
        assert kinds(out) == ["CDS", "EDS"]
        cds, ahead = out
        assert names(cds) == ["c"] and names(ahead) == ["c"]
        assert not cds.removed_resources
        assert conn.waiting_for == (b.CLUSTER_TYPE, b.ENDPOINT_TYPE)
        # Envoy subscribes to them while applying the clusters: nothing to send again.
        assert envoy.resubscribe(b.ENDPOINT_TYPE, ["a", "b", "c"]) == []
        assert envoy.ack(ahead) == []
    else:
        assert kinds(out) == ["CDS"]
        [cds] = out
        assert sorted(names(cds)) == ["a", "b", "c"]  # a stays until no route uses it
        assert conn.busy and conn.waiting_for == (b.CLUSTER_TYPE,)
        # Envoy asks for the new cluster's endpoints (with the latest nonce): answered at once.
        eds = envoy.resubscribe(b.ENDPOINT_TYPE, ["a", "b", "c"])
        assert kinds(eds) == ["EDS"] and "c" in names(eds[0])
        assert envoy.ack(eds[0]) == []
    # The CDS ACK (held by Envoy until c is warm) releases the route.
    [rds] = envoy.ack(cds)
    assert kinds([rds]) == ["RDS"]
    route = contents(rds)["r"]
    assert route.virtual_hosts[0].routes[0].route.cluster == "c"
    # The route ACK releases the removal of a.
    [removal] = envoy.ack(rds)
    assert kinds([removal]) == ["CDS"]
    if delta:
        assert isinstance(removal, DeltaResponse)
        assert list(removal.message().removed_resources) == ["a"] and names(removal) == []
    else:
        assert sorted(names(removal)) == ["b", "c"]
    assert envoy.ack(removal) == []
    assert not conn.busy and conn.status().synced


@pytest.mark.parametrize("delta", MODES)
def test_modified_cluster_is_followed_by_its_endpoints(delta: bool) -> None:
    conn, _ = connected(delta)
    resources = b.resources(
        clusters={"a": [("127.0.0.1", 1)], "b": [("127.0.0.1", 2)]},
        listeners={"http": (8000, "r")},
        routes={"r": b.route_config("r", "a")},
    )
    resources[b.CLUSTER_TYPE]["a"] = b.eds_cluster("a", timeout_ms=2500)
    out = conn.begin_push(build_snapshot(resources, ResourceCache()), PUSH)
    # Endpoints did not change, but Envoy re-warms cluster a and will not ask for them again.
    assert kinds(out) == ["CDS", "EDS"]
    if delta:
        assert names(out[0]) == ["a"] and names(out[1]) == ["a"]
    else:
        assert sorted(names(out[1])) == ["a", "b"]


@pytest.mark.parametrize("delta", MODES)
def test_nack_is_recorded_not_resent_and_blocks_cluster_removal(delta: bool) -> None:
    conn, envoy = connected(delta)
    bad = snapshot({"b": 2}, {})  # empty weighted_clusters; a is no longer wanted
    [rds] = conn.begin_push(bad, PUSH)
    assert kinds([rds]) == ["RDS"]
    assert envoy.ack(rds, error="weighted_clusters: value must contain at least 1 item") == []
    assert not conn.busy  # the push ended without removing cluster a
    assert "a" in conn.types[b.CLUSTER_TYPE].have
    rds_status = conn.status().types[b.ROUTE_TYPE]
    assert rds_status.state == "NACKED"
    assert rds_status.last_nack is not None and "weighted" in rds_status.last_nack.error

    # Same generated content again: nothing is sent, the removal stays blocked.
    assert conn.begin_push(snapshot({"b": 2}, {}), PUSH) == []
    assert "a" in conn.types[b.CLUSTER_TYPE].have

    # Fixed content is sent; once accepted, the removal follows.
    [fixed] = conn.begin_push(snapshot({"b": 2}, "b"), PUSH)
    assert kinds([fixed]) == ["RDS"]
    [removal] = envoy.ack(fixed)
    assert kinds([removal]) == ["CDS"]
    envoy.ack(removal)
    assert set(conn.types[b.CLUSTER_TYPE].have) == {"b"}
    assert conn.status().state("RDS") == "SYNCED"


@pytest.mark.parametrize("delta", MODES)
def test_missing_ack_times_out_and_the_push_continues(delta: bool) -> None:
    clock = Clock()
    conn, envoy = connected(delta, clock)
    out = conn.begin_push(snapshot({"a": 1, "b": 2, "c": 3}, "c"), PUSH)
    assert kinds(out) == (["CDS", "EDS"] if delta else ["CDS"])
    assert conn.check_timeout() == []  # not yet
    clock.now += 5.0
    assert conn.deadline is not None and conn.deadline <= clock.now
    later = conn.check_timeout()
    assert kinds(later) == ["RDS"]
    envoy.ack(later[0])
    assert not conn.busy


@pytest.mark.parametrize("delta", MODES)
def test_stale_ack_does_not_release_the_next_step(delta: bool) -> None:
    conn, envoy = connected(delta)
    first_cds = conn.types[b.CLUSTER_TYPE].sent_nonce
    cds, *ahead = conn.begin_push(snapshot({"a": 1, "b": 2, "c": 3}, "c"), PUSH)
    for eds in ahead:  # Delta: the new cluster's endpoints, sent with it
        assert envoy.ack(eds) == []
    stale = (
        delta_req(b.CLUSTER_TYPE, nonce=first_cds)
        if delta
        else sotw(b.CLUSTER_TYPE, nonce=first_cds, version="old")
    )
    assert conn.handle_request(stale) == []
    assert conn.busy and conn.waiting_for == (b.CLUSTER_TYPE,)
    assert kinds(envoy.ack(cds)) == ["RDS"]


def test_shared_cache_gives_proxies_the_same_entries() -> None:
    cache = ResourceCache()
    one = snapshot({"a": 1}, "a", cache)
    two = snapshot({"a": 1}, "a", cache)
    other = snapshot({"a": 9}, "a", cache)
    assert one.get(b.CLUSTER_TYPE)["a"] is two.get(b.CLUSTER_TYPE)["a"]
    assert one.get(b.ENDPOINT_TYPE)["a"] is two.get(b.ENDPOINT_TYPE)["a"]
    assert one.get(b.ENDPOINT_TYPE)["a"].hash != other.get(b.ENDPOINT_TYPE)["a"].hash
    assert one.eds_of_cluster == {"a": "a"}


def test_delta_reconnect_sends_only_what_changed_and_removes_what_is_gone() -> None:
    conn = ProxyConnection("2", b.node(), delta=True)
    old = snapshot({"a": 1, "b": 2}, "a")
    conn.set_target(snapshot({"a": 1, "c": 3}, "a"))
    declared = {name: e.hash for name, e in old.get(b.CLUSTER_TYPE).items()}
    [cds] = conn.handle_request(delta_req(b.CLUSTER_TYPE, initial=declared))
    assert isinstance(cds, DeltaResponse)
    assert names(cds) == ["c"]  # a is unchanged, the proxy keeps it
    assert list(cds.removed_resources) == ["b"]
    # It now has exactly the map it was answered from: that map is what it has (shared).
    have = conn.types[b.CLUSTER_TYPE].have
    assert isinstance(have, Have) and dict(have) == conn.target.hashes(b.CLUSTER_TYPE)


def test_delta_resumed_proxy_holding_everything_is_sent_nothing_and_shares_the_map() -> None:
    conn = ProxyConnection("2", b.node(), delta=True)
    conn.set_target(snapshot({"a": 1, "b": 2}, "a"))
    for type_url in (b.CLUSTER_TYPE, b.ENDPOINT_TYPE):
        declared = conn.target.hashes(type_url)
        subscribe = sorted(declared) if type_url == b.ENDPOINT_TYPE else []
        [response] = conn.handle_request(delta_req(type_url, subscribe, initial=declared))
        assert isinstance(response, DeltaResponse)
        assert names(response) == [] and list(response.removed_resources) == []
        assert isinstance(conn.types[type_url].have, Have)


def test_sotw_endpoints_response_holds_exactly_the_subscribed_names() -> None:
    conn = ProxyConnection("3", b.node(), delta=False)
    conn.set_target(snapshot({"a": 1, "b": 2, "c": 3}, "a"))
    envoy = FakeEnvoy(conn)
    envoy.sync(envoy.request(b.CLUSTER_TYPE))
    [eds] = envoy.request(b.ENDPOINT_TYPE, ["a", "c"])
    assert sorted(names(eds)) == ["a", "c"]
    envoy.ack(eds)
    [more] = envoy.resubscribe(b.ENDPOINT_TYPE, ["a", "b", "c"])
    assert sorted(names(more)) == ["a", "b", "c"]
    assert conn.status().types[b.ENDPOINT_TYPE].subscribed == ("a", "b", "c")


def test_delta_endpoints_sent_ahead_of_rejected_clusters_are_sent_again_later() -> None:
    conn, envoy = connected(True)
    cds, ahead = conn.begin_push(snapshot({"a": 1, "b": 2, "c": 3}, "a"), PUSH)
    assert names(cds) == ["c"] and names(ahead) == ["c"]
    envoy.ack(ahead)  # Envoy ACKs a response whose resource no watch wanted
    assert envoy.ack(cds, error="cluster c: bad") == []
    assert "c" not in conn.types[b.ENDPOINT_TYPE].have
    # Once Envoy accepts a cluster c and subscribes, its endpoints are sent (not assumed).
    [again] = envoy.resubscribe(b.ENDPOINT_TYPE, ["a", "b", "c"])
    assert kinds([again]) == ["EDS"] and names(again) == ["c"]


def test_delta_response_is_the_message_envoy_reads_with_entries_encoded_once() -> None:
    conn, envoy = connected(True)
    cache = ResourceCache()
    out = conn.begin_push(snapshot({"b": 2, "c": 3}, "c", cache), PUSH)
    cds = out[0]
    assert isinstance(cds, DeltaResponse)
    message = discovery_pb2.DeltaDiscoveryResponse.FromString(cds.SerializeToString())
    assert message.type_url == b.CLUSTER_TYPE and message.nonce == cds.nonce
    assert message.system_version_info == cds.system_version_info
    assert message.control_plane.identifier == "pilotfish"
    [entry] = cds.entries
    [resource] = message.resources
    assert (resource.name, resource.version) == ("c", entry.hash)
    assert resource.resource == entry.any
    # The encoded field is built once and shared by every response that carries the entry.
    assert entry.delta_field is entry.delta_field
    envoy.sync(out)
    [removal] = conn.begin_push(snapshot({"c": 3}, "c", cache), PUSH)
    assert list(removal.message().removed_resources) == ["b"]
    assert removal.message().resources == []


@pytest.mark.parametrize(
    ("type_url", "subscribe", "on_demand"),
    [
        pytest.param(b.CLUSTER_TYPE, [], frozenset(), id="wildcard"),
        pytest.param(b.CLUSTER_TYPE, [], frozenset({"b", "c"}), id="wildcard-on-demand"),
        pytest.param(b.CLUSTER_TYPE, ["c", "zz"], frozenset({"b", "c"}), id="on-demand-asked"),
        pytest.param(b.ENDPOINT_TYPE, ["a", "b", "c"], frozenset(), id="every-name"),
        pytest.param(b.ENDPOINT_TYPE, ["c", "a", "zz"], frozenset(), id="some-names"),
    ],
)
def test_a_first_answer_from_a_shared_map_is_the_general_one(
    type_url: str, subscribe: list[str], on_demand: frozenset[str]
) -> None:
    """A first request that declares nothing is answered from the shared map by set
    operations; the names sent and removed and what the proxy has are the general path's (a
    target of plain maps; its system version is chained per name instead of the map's)."""
    shared = snapshot({"a": 1, "b": 2, "c": 3}, "a")
    shared = Snapshot(entries=shared.entries, eds_of_cluster=shared.eds_of_cluster,
                      on_demand={b.CLUSTER_TYPE: on_demand})  # fmt: skip
    plain = Snapshot(
        entries={t: dict(m) for t, m in shared.entries.items()},
        eds_of_cluster=shared.eds_of_cluster,
        on_demand=shared.on_demand,
    )
    answers = []
    for target in (shared, plain):
        conn = ProxyConnection("1", b.node(), delta=True, monotonic=Clock())
        conn.set_target(target)
        (response,) = conn.handle_request(delta_req(type_url, subscribe=subscribe))
        assert isinstance(response, DeltaResponse)
        state = conn.types[type_url]
        answers.append(
            (
                # What is written (a whole map's joined encodings, or each entry's).
                [(r.name, r.version) for r in response.message().resources],
                response.removed_resources,
                dict(state.have),
            )
        )
    assert answers[0] == answers[1]
    assert answers[0][0]  # something is sent in every case


def test_delta_resumed_endpoints_keep_declared_names_that_are_gone_beside_the_shared_map() -> None:
    conn = ProxyConnection("2", b.node(), delta=True)
    conn.set_target(snapshot({"a": 1, "b": 2}, "a"))
    target = conn.target.hashes(b.ENDPOINT_TYPE)
    # Subscribed to a, b and gone (no longer generated); holds an older b; declares stray,
    # which it does not subscribe to.
    declared = {"a": target["a"], "b": "older", "gone": "h0", "stray": "h1"}
    [eds] = conn.handle_request(delta_req(b.ENDPOINT_TYPE, ["a", "b", "gone"], initial=declared))
    assert names(eds) == ["b"] and list(eds.removed_resources) == []
    have = conn.types[b.ENDPOINT_TYPE].have
    assert isinstance(have, Have) and have.base is conn.target.get(b.ENDPOINT_TYPE)
    assert dict(have) == {**target, "gone": "h0"}
    # Once it unsubscribes, what it had under the name is forgotten.
    assert conn.handle_request(delta_req(b.ENDPOINT_TYPE, [], ["gone"])) == []
    assert dict(conn.types[b.ENDPOINT_TYPE].have) == target
