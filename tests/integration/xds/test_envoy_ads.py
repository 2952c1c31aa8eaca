"""The xDS server driving real Envoys over ADS, SotW and Delta, with real traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from google.protobuf.message import Message

from pilotfish.api.node import NodeInfo
from pilotfish.xds import PushRequest, Resources
from tests.integration.xds.conftest import (
    StartEnvoy,
    StartServer,
    get,
    wait_for_body,
)
from tests.unit.xds import builders as b

pytestmark = pytest.mark.integration

MODES = [pytest.param(False, id="sotw"), pytest.param(True, id="delta")]


class Config:
    """A mutable generator: one listener, one route config, the clusters of the moment."""

    def __init__(self, listener_port: int, clusters: dict[str, int], route: Message) -> None:
        self.listener_port = listener_port
        self.clusters = clusters
        self.route = route
        self.calls = 0

    def __call__(self, node: NodeInfo) -> Resources:
        self.calls += 1
        return b.resources(
            clusters={name: [("127.0.0.1", port)] for name, port in self.clusters.items()},
            listeners={"http": (self.listener_port, "http-routes")},
            routes={"http-routes": self.route},
        )


@pytest.mark.parametrize("delta", MODES)
async def test_routes_traffic_and_applies_route_changes(
    delta: bool,
    start_envoy: StartEnvoy,
    xds_server: StartServer,
    backends: Callable[[str], Awaitable[int]],
    free_port: Callable[[], int],
) -> None:
    a, c = await backends("A"), await backends("B")
    port = free_port()
    config = Config(port, {"a": a, "b": c}, b.route_config("http-routes", "a"))
    server = await xds_server(config)
    connected: list[str] = []
    server.on_connect = lambda n: connected.append(n.pod_name)
    node = b.node("client-1")
    envoy = await start_envoy(node, server.port, delta=delta)
    async with aiohttp.ClientSession() as session:
        await wait_for_body(session, port, "A", envoy)
        assert connected == ["client-1"]

        config.route = b.route_config("http-routes", "b")
        server.push(PushRequest.of("test"))
        assert await server.wait_synced(20)
        assert await get(session, port) == (200, "B")

    [status] = server.status()
    assert status.node_id == node.node_id
    assert status.protocol == ("Delta" if delta else "SotW")
    for kind in ("CDS", "EDS", "LDS", "RDS"):
        assert status.state(kind) == "SYNCED", status.to_dict()


@pytest.mark.parametrize("delta", MODES)
async def test_invalid_resource_is_nacked_recorded_not_resent_and_old_config_serves(
    delta: bool,
    start_envoy: StartEnvoy,
    xds_server: StartServer,
    backends: Callable[[str], Awaitable[int]],
    free_port: Callable[[], int],
) -> None:
    a = await backends("A")
    port = free_port()
    config = Config(port, {"a": a}, b.route_config("http-routes", "a"))
    server = await xds_server(config)
    envoy = await start_envoy(b.node(), server.port, delta=delta)
    async with aiohttp.ClientSession() as session:
        await wait_for_body(session, port, "A", envoy)
        assert await server.wait_synced(20)
        good_version = server.status()[0].types[b.ROUTE_TYPE].acked_version

        config.route = b.route_config("http-routes", {})  # empty weighted_clusters
        server.push(PushRequest.of("bad route"))
        assert await server.wait_synced(20)
        rds = server.status()[0].types[b.ROUTE_TYPE]
        assert rds.state == "NACKED"
        assert rds.last_nack is not None
        assert "weighted" in rds.last_nack.error.lower() or "cluster" in rds.last_nack.error
        assert rds.acked_version == good_version
        assert await get(session, port) == (200, "A")

        # The same rejected content is not sent again.
        nonce = rds.sent_nonce
        server.push(PushRequest.of("unrelated"))
        assert await server.wait_synced(20)
        assert server.status()[0].types[b.ROUTE_TYPE].sent_nonce == nonce
        assert await get(session, port) == (200, "A")

        # A fixed route is sent and accepted.
        config.route = b.route_config("http-routes", "a", tag="fixed")
        server.push(PushRequest.of("fixed"))
        assert await server.wait_synced(20)
        fixed = server.status()[0].types[b.ROUTE_TYPE]
        assert fixed.state == "SYNCED"
        async with session.get(f"http://127.0.0.1:{port}/") as response:
            assert response.status == 200
            assert response.headers.get("x-route-tag") == "fixed"


@pytest.mark.parametrize("delta", MODES)
async def test_no_failed_request_while_routes_flip_and_clusters_come_and_go(
    delta: bool,
    start_envoy: StartEnvoy,
    xds_server: StartServer,
    backends: Callable[[str], Awaitable[int]],
    free_port: Callable[[], int],
) -> None:
    ports = {"A": await backends("A"), "B": await backends("B")}
    port = free_port()
    config = Config(port, {"v0": ports["A"]}, b.route_config("http-routes", "v0"))
    server = await xds_server(config)
    envoy = await start_envoy(b.node(), server.port, delta=delta)
    results: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def load(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                results.append(await get(session, port))
            except (aiohttp.ClientError, OSError) as e:
                results.append((0, repr(e)))

    async with aiohttp.ClientSession() as session:
        await wait_for_body(session, port, "A", envoy)
        assert await server.wait_synced(20)
        loader = asyncio.get_running_loop().create_task(load(session))
        try:
            for flip in range(1, 21):
                backend = "B" if flip % 2 else "A"
                # A new cluster for each flip; the previous one is removed in the same push.
                config.clusters = {f"v{flip}": ports[backend]}
                config.route = b.route_config("http-routes", f"v{flip}")
                server.push(PushRequest.of("flip"))
                assert await server.wait_synced(20), server.status()[0].to_dict()
                assert sorted(server.status()[0].types) and results
                assert await get(session, port) == (200, backend)
            while len(results) < 300:
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loader

    failures = [r for r in results if r[0] != 200]
    assert len(results) >= 300
    assert failures == [], f"{len(failures)} of {len(results)} failed: {failures[:5]}"
    assert {body for _, body in results} == {"A", "B"}
    status = server.status()[0]
    assert status.types[b.CLUSTER_TYPE].resource_count == 1
    assert status.state("CDS") == "SYNCED"


@pytest.mark.parametrize("delta", MODES)
async def test_modified_cluster_in_use_is_rewarmed_without_waiting_for_envoy_timeout(
    delta: bool,
    start_envoy: StartEnvoy,
    xds_server: StartServer,
    backends: Callable[[str], Awaitable[int]],
    free_port: Callable[[], int],
) -> None:
    a = await backends("A")
    port = free_port()

    class Rewarm(Config):
        timeout_ms = 1000

        def __call__(self, node: NodeInfo) -> Resources:
            out = dict(super().__call__(node))
            out[b.CLUSTER_TYPE] = {"a": b.eds_cluster("a", timeout_ms=self.timeout_ms)}
            return out

    config = Rewarm(port, {"a": a}, b.route_config("http-routes", "a"))
    server = await xds_server(config)
    envoy = await start_envoy(b.node(), server.port, delta=delta)
    async with aiohttp.ClientSession() as session:
        await wait_for_body(session, port, "A", envoy)
        assert await server.wait_synced(20)
        before = server.status()[0].types[b.CLUSTER_TYPE].acked_version
        # Only the cluster changes; its endpoints do not. Without the server re-sending them,
        # Envoy would hold the CDS ACK until its initial_fetch_timeout (15 s) passed.
        config.timeout_ms = 2000
        server.push(PushRequest.of("cluster change"))
        assert await server.wait_synced(10), server.status()[0].to_dict()
        cds = server.status()[0].types[b.CLUSTER_TYPE]
        assert cds.state == "SYNCED" and cds.acked_version != before
        assert await get(session, port) == (200, "A")


async def test_keepalive_pings_do_not_close_the_stream(
    start_envoy: StartEnvoy,
    xds_server: StartServer,
    backends: Callable[[str], Awaitable[int]],
    free_port: Callable[[], int],
) -> None:
    """Envoy pings its ADS connection; gRPC's default server policy would answer frequent pings
    with GOAWAY (too_many_pings), and the proxy would drop out of the registry while it
    reconnects. Pinging every second for several seconds must keep the one stream."""
    a = await backends("A")
    port = free_port()
    server = await xds_server(Config(port, {"a": a}, b.route_config("http-routes", "a")))
    events: list[str] = []
    server.on_connect = lambda n: events.append("connect")
    server.on_disconnect = lambda n: events.append("disconnect")
    envoy = await start_envoy(b.node("pinger"), server.port, delta=True, keepalive="1s")
    async with aiohttp.ClientSession() as session:
        await wait_for_body(session, port, "A", envoy)
        await asyncio.sleep(8)  # eight pings: well past gRPC's default strike limit
        assert await get(session, port) == (200, "A")
    assert events == ["connect"], envoy.log()[-2000:]


async def test_delta_new_cluster_warms_on_the_endpoints_sent_with_it(
    start_envoy: StartEnvoy,
    xds_server: StartServer,
    backends: Callable[[str], Awaitable[int]],
    free_port: Callable[[], int],
) -> None:
    """The load assignment of a new cluster goes in the same push as the cluster, before
    Envoy subscribes to it: Envoy warms the cluster from it (traffic reaches its endpoint)
    and the subscription it sends afterwards is not answered a second time."""
    ports = {"A": await backends("A"), "B": await backends("B")}
    port = free_port()
    config = Config(port, {"a": ports["A"]}, b.route_config("http-routes", "a"))
    server = await xds_server(config)
    envoy = await start_envoy(b.node(), server.port, delta=True)
    async with aiohttp.ClientSession() as session:
        await wait_for_body(session, port, "A", envoy)
        assert await server.wait_synced(20)
        [stream] = server._streams.values()
        eds = stream.conn.types[b.ENDPOINT_TYPE]
        before = eds.sent_seq

        config.clusters = {"a": ports["A"], "c": ports["B"]}
        config.route = b.route_config("http-routes", "c")
        server.push(PushRequest.of("new cluster"))
        # Under Envoy's initial_fetch_timeout (15 s): the cluster did not wait for it.
        assert await server.wait_synced(10), server.status()[0].to_dict()
        assert await get(session, port) == (200, "B")

    sent = [names for seq, _, names in eds.nonces.values() if seq > before]
    assert sent == [("c",)]  # once, ahead of the subscription
    status = server.status()[0]
    assert "c" in status.types[b.ENDPOINT_TYPE].subscribed
    assert status.state("CDS") == "SYNCED" and status.state("EDS") == "SYNCED"
