"""Helpers for the agent's integration tests: a minimal ADS server, HTTP probes, settings."""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from pilotfish.agent.settings import AgentSettings, HostPort
from pilotfish.api.node import NodeInfo


class EmptyAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """Answers every first subscription to a type with an empty response (SotW and Delta).

    Enough for Envoy to count CDS and LDS as received; records the node ids it saw.
    """

    def __init__(self) -> None:
        self.nodes: list[str] = []
        self.type_urls: list[str] = []
        self._nonces = itertools.count(1)

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        async for request in request_iterator:
            if request.node.id:
                self.nodes.append(request.node.id)
            if request.response_nonce:
                continue
            self.type_urls.append(request.type_url)
            yield discovery_pb2.DiscoveryResponse(
                type_url=request.type_url, version_info="1", nonce=str(next(self._nonces))
            )

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest], context: Any
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        async for request in request_iterator:
            if request.node.id:
                self.nodes.append(request.node.id)
            if request.response_nonce:
                continue
            self.type_urls.append(request.type_url)
            yield discovery_pb2.DeltaDiscoveryResponse(
                type_url=request.type_url,
                system_version_info="1",
                nonce=str(next(self._nonces)),
            )


@pytest.fixture
async def empty_ads(free_port: Callable[[], int]) -> AsyncIterator[tuple[EmptyAds, int]]:
    servicer = EmptyAds()
    server = grpc.aio.server()
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(grace=None)


def closed_port() -> int:
    """A loopback port nobody listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_settings(
    tmp_path: Path, free_port: Callable[[], int], **overrides: Any
) -> AgentSettings:
    """Agent settings with every port free on loopback and a short initial fetch timeout."""
    node = NodeInfo(
        proxy_type="sidecar",
        ip="127.0.0.1",
        pod_name="agent-test",
        namespace="default",
        labels={"app": "agent-test"},
        interception_mode="NONE",
        outbound_port=free_port(),
    )
    values: dict[str, Any] = {
        "node": node,
        "work_dir": tmp_path / "work",
        "discovery_address": HostPort("127.0.0.1", closed_port()),
        "admin_port": free_port(),
        "readiness_port": free_port(),
        "readiness_bind": "127.0.0.1",
        "agent_port": free_port(),
        "agent_bind": "127.0.0.1",
        "concurrency": 1,
        "initial_fetch_timeout_s": 0.5,
        "drain_seconds": 2.0,
        "log_level": "info",
        "log_path": tmp_path / "envoy.log",
    }
    values.update(overrides)
    return AgentSettings(**values)


async def http_get(url: str, timeout: float = 2.0) -> httpx.Response | None:
    """GET ``url``; None when the connection is refused or fails."""
    async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
        try:
            return await client.get(url)
        except httpx.HTTPError:
            return None


async def eventually(
    check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition"
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
