"""DiscoveryServer over loopback gRPC with the Python ADS client (no Envoy)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message

from pilotfish.api.node import NodeInfo
from pilotfish.testing.ads_client import AdsClient, Shared, node_proto
from pilotfish.xds import DebounceSettings, DiscoveryServer, PushRequest, Resources, XdsSettings
from pilotfish.xds.push import Scope
from pilotfish.xds.resources import Entry
from tests.unit.xds import builders as b

MODES = [pytest.param(False, id="sotw"), pytest.param(True, id="delta")]


class Gen:
    def __init__(self) -> None:
        self.route_to = "a"
        self.clusters = {"a": 1, "b": 2}
        self.fail = False
        self.nodes: list[NodeInfo] = []

    def route(self) -> Message:
        return b.route_config("r", self.route_to)

    def __call__(self, node: NodeInfo) -> Resources:
        self.nodes.append(node)
        if self.fail:
            raise RuntimeError("generator exploded")
        return b.resources(
            clusters={n: [("127.0.0.1", p)] for n, p in self.clusters.items()},
            listeners={"http": (8000, "r")},
            routes={"r": self.route()},
        )


@pytest.fixture
async def served() -> AsyncIterator[tuple[DiscoveryServer, Gen]]:
    gen = Gen()
    server = DiscoveryServer(
        XdsSettings(address="127.0.0.1:0", debounce=DebounceSettings(quiet=0.01, max_delay=0.1)),
        gen,
    )
    await server.start()
    try:
        yield server, gen
    finally:
        await server.stop(grace=0.1)


def route_cluster(client: AdsClient) -> str:
    route = client.routes["r"]
    return str(route.virtual_hosts[0].routes[0].route.cluster)


@pytest.mark.parametrize("delta", MODES)
async def test_client_syncs_and_gets_pushes_and_hooks_run(
    served: tuple[DiscoveryServer, Gen], delta: bool
) -> None:
    server, gen = served
    events: list[str] = []
    server.on_connect = lambda n: events.append(f"+{n.pod_name}")

    async def gone(n: NodeInfo) -> None:
        events.append(f"-{n.pod_name}")

    server.on_disconnect = gone
    node = b.node("reviews-v1")
    client = AdsClient(f"127.0.0.1:{server.port}", node, delta=delta)
    await client.start()
    try:
        await client.wait_for(lambda c: "r" in c.routes)
        assert set(client.clusters) == {"a", "b"} and set(client.endpoints) == {"a", "b"}
        assert gen.nodes[0] == node  # NodeInfo survives the Struct round trip
        assert await server.wait_synced(10)

        gen.route_to, gen.clusters = "c", {"c": 3}
        server.push(PushRequest.of("test"))
        await client.wait_for(lambda c: set(c.clusters) == {"c"} and route_cluster(c) == "c")
        assert await server.wait_synced(10)
        if delta:
            # The client followed the clusters: subscribed to c's load assignment, dropped
            # a's and b's (a SotW client keeps them until the next EDS response).
            assert set(client.endpoints) == {"c"}
        # The route arrived after the cluster it uses and before the old ones were removed.
        order = [(r.type_url, r.names, r.removed) for r in client.received]
        got_c = next(i for i, o in enumerate(order) if o[0] == b.CLUSTER_TYPE and "c" in o[1])
        new_route = next(i for i, o in enumerate(order) if o[0] == b.ROUTE_TYPE and i > got_c)
        removal = max(i for i, o in enumerate(order) if o[0] == b.CLUSTER_TYPE)
        assert got_c < new_route < removal
        [status] = server.status()
        assert status.synced and status.to_dict()["types"]["RDS"]["state"] == "SYNCED"
    finally:
        await client.stop()
    for _ in range(200):
        if server.status() == [] and len(events) == 2:
            break
        await asyncio.sleep(0.01)
    assert events == ["+reviews-v1", "-reviews-v1"]


async def test_what_a_push_replaced_is_not_kept_by_the_cache(
    served: tuple[DiscoveryServer, Gen],
) -> None:
    """Each push sends a new route configuration: the ones the proxy no longer has are let
    go within two pushes, not kept by the serialization memo (a thousand services' route
    configuration is megabytes)."""
    server, gen = served
    client = AdsClient(f"127.0.0.1:{server.port}", b.node("reviews-v1"), delta=True)
    await client.start()
    try:
        await client.wait_for(lambda c: "r" in c.routes)
        routes: list[weakref.ref[Entry]] = []
        for i in range(6):
            routes.append(weakref.ref(server.cache.intern(b.ROUTE_TYPE, "r", gen.route())))
            gen.clusters = {f"c{i}": 1}
            gen.route_to = f"c{i}"
            server.push(PushRequest.of("test"))
            await client.wait_for(lambda c, i=i: route_cluster(c) == f"c{i}")  # type: ignore[misc]
            assert await server.wait_synced(10)
        gc.collect()
        # The first one stays: what the proxy has is recorded over the map of its first
        # configuration (``protocol.Have``), shared by the proxies that got the same one.
        alive = [i for i, r in enumerate(routes) if r() is not None]
        assert alive[0] == 0 and alive[1:] and alive[1] >= len(routes) - 2
    finally:
        await client.stop()


@pytest.mark.parametrize("delta", MODES)
async def test_nacked_route_is_recorded_and_not_resent(
    served: tuple[DiscoveryServer, Gen], delta: bool
) -> None:
    server, gen = served

    def reject(type_url: str, resources: dict[str, Message] | object) -> str | None:
        if type_url == b.ROUTE_TYPE and gen.route_to == "nowhere":
            return "route r: unknown cluster 'nowhere'"
        return None

    client = AdsClient(f"127.0.0.1:{server.port}", b.node(), delta=delta, reject=reject)
    await client.start()
    try:
        await client.wait_for(lambda c: "r" in c.routes)
        assert await server.wait_synced(10)
        gen.route_to = "nowhere"
        server.push(PushRequest.of("bad"))
        await client.wait_for(lambda c: any(r.nacked for r in c.received))
        assert await server.wait_synced(10)
        rds = server.status()[0].types[b.ROUTE_TYPE]
        assert rds.state == "NACKED" and rds.last_nack is not None
        assert "unknown cluster" in rds.last_nack.error
        count = len(client.received)
        server.push(PushRequest.of("again"))
        assert await server.wait_synced(10)
        assert len(client.received) == count
        assert route_cluster(client) == "a"
    finally:
        await client.stop()


async def test_unparsable_node_is_refused_with_invalid_argument(
    served: tuple[DiscoveryServer, Gen],
) -> None:
    server, _ = served
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        bad = base_pb2.Node(id="not-a-mesh-node", metadata=struct_pb2.Struct())
        await call.write(discovery_pb2.DiscoveryRequest(node=bad, type_url=b.CLUSTER_TYPE))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not-a-mesh-node" in (info.value.details() or "")
    assert server.status() == []


async def test_failing_generator_keeps_the_stream_and_the_config(
    served: tuple[DiscoveryServer, Gen],
) -> None:
    server, gen = served
    client = AdsClient(f"127.0.0.1:{server.port}", b.node())
    await client.start()
    try:
        await client.wait_for(lambda c: "r" in c.routes)
        assert server.status()[0].generation_error is None
        gen.fail = True
        server.push(PushRequest.of("broken"))
        assert await server.wait_synced(10)
        assert client.error is None and route_cluster(client) == "a"
        # Not silent: the proxy's status says its config could not be generated, and why.
        failed = server.status()[0].generation_error
        assert failed is not None and failed.error == "RuntimeError: generator exploded"
        assert server.status()[0].to_dict()["generation_error"]["error"] == failed.error
        gen.fail, gen.route_to = False, "b"
        await asyncio.to_thread(server.push_threadsafe, PushRequest.of("fixed"))
        await client.wait_for(lambda c: route_cluster(c) == "b")
        assert server.status()[0].generation_error is None
    finally:
        await client.stop()


async def test_many_clients_share_serialized_resources(
    served: tuple[DiscoveryServer, Gen], free_port: Callable[[], int]
) -> None:
    server, _ = served
    clients = [
        AdsClient(f"127.0.0.1:{server.port}", b.node(f"app-{i}"), delta=bool(i % 2))
        for i in range(10)
    ]
    for client in clients:
        await client.start()
    try:
        for client in clients:
            await client.wait_for(lambda c: "r" in c.routes)
        # 2 clusters + 2 assignments + 1 listener + 1 route, whatever the number of proxies.
        assert server.cache.size == 6
        assert len(server.status()) == 10
    finally:
        for client in clients:
            await client.stop()


async def test_clients_sharing_unpacked_resources_follow_their_clusters(
    served: tuple[DiscoveryServer, Gen],
) -> None:
    """Delta clients of one process unpack each resource version once (``shared``), and
    each still subscribes to the load assignments of the clusters it holds."""
    server, gen = served
    shared: Shared = {}
    clients = [
        AdsClient(f"127.0.0.1:{server.port}", b.node(f"app-{i}"), delta=True, shared=shared)
        for i in range(2)
    ]
    for client in clients:
        await client.start()
    try:
        for client in clients:
            await client.wait_for(lambda c: "r" in c.routes and set(c.endpoints) == {"a", "b"})
        assert clients[0].clusters["a"] is clients[1].clusters["a"]
        gen.clusters = {"b": 2, "c": 3}
        server.push(PushRequest.of("test"))
        for client in clients:
            await client.wait_for(lambda c: set(c.endpoints) == {"b", "c"})
            assert set(client.versions[b.CLUSTER_TYPE]) == {"b", "c"}
    finally:
        for client in clients:
            await client.stop()


@pytest.mark.parametrize("delta", MODES)
async def test_planner_scopes_pushes_to_the_proxies_and_types_it_names(delta: bool) -> None:
    gen = Gen()
    plans: list[dict[str, dict[str, frozenset[str] | None] | None]] = []

    def planner(request: PushRequest, nodes: object) -> dict[str, object]:
        return plans.pop(0)  # type: ignore[return-value]

    server = DiscoveryServer(
        XdsSettings(address="127.0.0.1:0", debounce=DebounceSettings(quiet=0.01, max_delay=0.1)),
        gen,
        planner=planner,  # type: ignore[arg-type]
    )
    await server.start()
    one, two = b.node("one"), b.node("two")
    clients = [AdsClient(f"127.0.0.1:{server.port}", n, delta=delta) for n in (one, two)]
    try:
        for c in clients:
            await c.start()
            await c.wait_for(lambda c: "r" in c.routes)
        assert await server.wait_synced(10)
        received = [len(c.received) for c in clients]
        # Routes and clusters change; the plan names routes of "one" and nothing of "two".
        gen.route_to, gen.clusters = "b", {"a": 1, "b": 3, "c": 4}
        plans.append({one.node_id: {b.ROUTE_TYPE: None}})
        server.push(PushRequest.of("config", full=False))
        await clients[0].wait_for(lambda c: route_cluster(c) == "b")
        assert await server.wait_synced(10)
        assert set(clients[0].clusters) == {"a", "b"}  # not in scope: left as it was
        assert len(clients[1].received) == received[1]  # not reached at all
        assert route_cluster(clients[1]) == "a"
        # A scope naming one cluster compares that cluster only (and its endpoints).
        plans.append({two.node_id: {b.CLUSTER_TYPE: frozenset({"c"})}})
        server.push(PushRequest.of("config", full=False))
        await clients[1].wait_for(lambda c: "c" in c.clusters and "c" in c.endpoints)
        assert await server.wait_synced(10)
        assert route_cluster(clients[1]) == "a"
        # Everything (None) for both.
        plans.append({one.node_id: None, two.node_id: None})
        server.push(PushRequest.of("config", full=False))
        for c in clients:
            await c.wait_for(lambda c: set(c.clusters) == {"a", "b", "c"})
            await c.wait_for(lambda c: route_cluster(c) == "b")
    finally:
        for c in clients:
            await c.stop()
        await server.stop(grace=0.1)


async def test_light_scoped_generations_run_on_the_loop_after_one_warm_up_in_a_thread() -> None:
    gen = Gen()
    calls: list[tuple[str, bool]] = []
    loop_thread = threading.get_ident()
    plans: list[dict[str, object]] = []

    def scoped(node: NodeInfo, scope: Scope) -> Resources:
        calls.append((node.pod_name, threading.get_ident() == loop_thread))
        return gen(node)

    server = DiscoveryServer(
        XdsSettings(address="127.0.0.1:0", debounce=DebounceSettings(quiet=0.01, max_delay=0.1)),
        gen,
        planner=lambda request, nodes: plans.pop(0),  # type: ignore[arg-type,return-value]
        scoped_generator=scoped,
    )
    await server.start()
    nodes = [b.node("one"), b.node("two")]
    clients = [AdsClient(f"127.0.0.1:{server.port}", n, delta=True) for n in nodes]
    try:
        for c in clients:
            await c.start()
            await c.wait_for(lambda c: "r" in c.routes)
        assert await server.wait_synced(10)
        # Routes (whole) and one named cluster: light. One warm-up for the namespace in the
        # planner's thread, then each proxy's generation on the loop.
        gen.route_to, gen.clusters = "b", {"a": 1, "b": 3}
        light = {b.ROUTE_TYPE: None, b.CLUSTER_TYPE: frozenset({"b"})}
        plans.append({n.node_id: light for n in nodes})
        server.push(PushRequest.of("config", full=False))
        for c in clients:
            await c.wait_for(lambda c: route_cluster(c) == "b")
        assert await server.wait_synced(10)
        assert sorted(on_loop for _, on_loop in calls) == [False, True, True]
        # Every cluster: not light, generated in worker threads.
        calls.clear()
        gen.clusters = {"a": 1, "b": 3, "c": 4}
        plans.append({n.node_id: {b.CLUSTER_TYPE: None} for n in nodes})
        server.push(PushRequest.of("config", full=False))
        for c in clients:
            await c.wait_for(lambda c: "c" in c.clusters)
        assert await server.wait_synced(10)
        assert [on_loop for _, on_loop in calls] == [False, False]
    finally:
        for c in clients:
            await c.stop()
        await server.stop(grace=0.1)


async def test_proxies_of_one_view_with_the_same_maps_share_one_scoped_update() -> None:
    # A push of endpoint changes: the proxies of one view that had the same clusters and
    # load assignments get the same ones after; generated and updated once, not per proxy.
    gen = Gen()
    views: list[str] = []
    generated: list[str] = []
    plans: list[dict[str, object]] = []

    def view(node: NodeInfo, scope: Scope) -> tuple[object, Callable[[], Resources]] | None:
        views.append(node.pod_name)
        if node.pod_name == "three":  # not sure: its own generation
            return None

        def generate() -> Resources:
            generated.append(node.pod_name)
            return gen(node)

        return ("one view", gen.clusters["b"]), generate

    server = DiscoveryServer(
        XdsSettings(address="127.0.0.1:0", debounce=DebounceSettings(quiet=0.01, max_delay=0.1)),
        gen,
        planner=lambda request, nodes: plans.pop(0),  # type: ignore[arg-type,return-value]
        scoped_generator=lambda node, scope: gen(node),
        scoped_view=view,
    )
    await server.start()
    nodes = [b.node("one"), b.node("two"), b.node("three")]
    clients = [AdsClient(f"127.0.0.1:{server.port}", n, delta=True) for n in nodes]
    try:
        for c in clients:
            await c.start()
            await c.wait_for(lambda c: "r" in c.routes)
        assert await server.wait_synced(10)
        # Same first configuration for all three: one map each type, shared.
        gen.clusters = {"a": 1, "b": 3}
        scope = {b.CLUSTER_TYPE: frozenset({"b"}), b.ENDPOINT_TYPE: frozenset({"b"})}
        plans.append({n.node_id: scope for n in nodes})
        server.push(PushRequest.of("endpoint", full=False))
        for c in clients:
            await c.wait_for(lambda c: endpoint_ports(c, "b") == [3])
        assert await server.wait_synced(10)
        assert sorted(views) == ["one", "three", "two"]
        assert len(generated) == 1  # one of "one" and "two"; "three" on its own
        # The next change starts from the shared maps again: still one update for both.
        views.clear()
        generated.clear()
        gen.clusters = {"a": 1, "b": 4}
        plans.append({n.node_id: scope for n in nodes})
        server.push(PushRequest.of("endpoint", full=False))
        for c in clients:
            await c.wait_for(lambda c: endpoint_ports(c, "b") == [4])
        assert await server.wait_synced(10)
        assert len(generated) == 1
    finally:
        for c in clients:
            await c.stop()
        await server.stop(grace=0.1)


def endpoint_ports(client: AdsClient, name: str) -> list[int]:
    cla = client.endpoints.get(name)
    if cla is None:
        return []
    return [
        e.endpoint.address.socket_address.port_value
        for lb in cla.endpoints
        for e in lb.lb_endpoints
    ]


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def test_a_reconnecting_proxy_joins_while_it_waits_in_the_throttle_a_new_one_does_not() -> (
    None
):
    gen = Gen()
    server = DiscoveryServer(
        XdsSettings(
            address="127.0.0.1:0",
            debounce=DebounceSettings(quiet=0.01, max_delay=0.1),
            max_concurrent_connects=1,
            ack_timeout=30.0,
        ),
        gen,
    )
    events: list[str] = []
    server.on_connect = lambda n: events.append(f"+{n.pod_name}")
    server.on_disconnect = lambda n: events.append(f"-{n.pod_name}")
    await server.start()
    channels: list[grpc.aio.Channel] = []
    calls: dict[str, object] = {}

    async def open_stream(name: str, *requests: discovery_pb2.DeltaDiscoveryRequest) -> None:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        channels.append(channel)
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources()
        calls[name] = call
        first, *rest = requests
        first.node.CopyFrom(node_proto(b.node(name)))
        for request in (first, *rest):
            await call.write(request)

    try:
        # A new proxy takes the one slot and keeps it (it never asks for listeners).
        await open_stream("holder-1", discovery_pb2.DeltaDiscoveryRequest(type_url=b.CLUSTER_TYPE))
        await _until(lambda: "+holder-1" in events, "the first proxy to connect")
        # A proxy connecting for the first time and one reconnecting with its listeners
        # (clusters first, then the rest at once, as Envoy resumes) both queue for the slot.
        await open_stream(
            "new-1",
            discovery_pb2.DeltaDiscoveryRequest(type_url=b.CLUSTER_TYPE),
            discovery_pb2.DeltaDiscoveryRequest(type_url=b.LISTENER_TYPE),
        )
        await open_stream(
            "back-1",
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=b.CLUSTER_TYPE, initial_resource_versions={"a": "h1"}
            ),
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=b.LISTENER_TYPE, initial_resource_versions={"http": "h2"}
            ),
        )
        await _until(lambda: "+back-1" in events, "the reconnecting proxy to join")
        assert server.in_storm()  # both still wait for the slot: neither was generated
        assert [n.pod_name for n in gen.nodes] == ["holder-1"]
        await asyncio.sleep(0.1)
        assert "+new-1" not in events

        # The slot frees: the new proxy joins once its first configuration is generated.
        calls["holder-1"].cancel()  # type: ignore[attr-defined]
        await _until(lambda: "+new-1" in events, "the new proxy to join")
        assert {n.pod_name for n in gen.nodes} >= {"new-1"}
        calls["back-1"].cancel()  # type: ignore[attr-defined]
        await _until(lambda: "-back-1" in events, "the reconnecting proxy to leave")
        assert events.count("+back-1") == 1
    finally:
        for call in calls.values():
            call.cancel()  # type: ignore[attr-defined]
        for channel in channels:
            await channel.close()
        await server.stop(grace=0.1)


async def test_after_a_restart_a_resumed_proxy_is_sent_nothing_it_holds() -> None:
    gen = Gen()
    settings = XdsSettings(
        address="127.0.0.1:0", debounce=DebounceSettings(quiet=0.01, max_delay=0.1)
    )
    server = DiscoveryServer(settings, gen)
    await server.start()
    client = AdsClient(f"127.0.0.1:{server.port}", b.node("reviews-v1"), delta=True, reconnect=True)
    await client.start()
    restarted: DiscoveryServer | None = None
    try:
        await client.wait_for(lambda c: "r" in c.routes)
        assert await server.wait_synced(10)
        held = {t: dict(v) for t, v in client.versions.items()}
        await server.stop(grace=0)
        # The same generator in a new server on the same port: the same content hashes.
        restarted = DiscoveryServer(
            XdsSettings(
                address=f"127.0.0.1:{server.port}",
                debounce=DebounceSettings(quiet=0.01, max_delay=0.1),
            ),
            gen,
        )
        events: list[str] = []
        restarted.on_connect = lambda n: events.append(f"+{n.pod_name}")
        await restarted.start()
        since = time.monotonic()
        await client.wait_for(
            lambda c: (
                c.streams >= 2
                and all(
                    c.acked_version(t)
                    for t in (b.CLUSTER_TYPE, b.ENDPOINT_TYPE, b.LISTENER_TYPE, b.ROUTE_TYPE)
                )
            ),
            timeout=20,
        )
        assert await restarted.wait_synced(10)
        after = [r for r in client.received if r.at >= since]
        assert {r.type_url for r in after} >= {b.CLUSTER_TYPE, b.LISTENER_TYPE}
        assert [n for r in after for n in (*r.names, *r.removed)] == []
        assert client.versions == held
        assert events == ["+reviews-v1"]
    finally:
        await client.stop()
        if restarted is not None:
            await restarted.stop(grace=0.1)
