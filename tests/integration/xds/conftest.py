"""Real Envoys, loopback HTTP backends and an in-process xDS server for the xDS tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.api.node import NodeInfo
from pilotfish.xds import DebounceSettings, DiscoveryServer, Generator, XdsSettings

pytestmark = pytest.mark.integration


@dataclass
class EnvoyProc:
    process: subprocess.Popen[bytes]
    admin_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def bootstrap(
    node: NodeInfo, ads_port: int, admin_port: int, *, delta: bool, keepalive: str | None = None
) -> dict[str, Any]:
    ads = {"ads": {}, "resource_api_version": "V3"}
    http2: dict[str, Any] = {}
    if keepalive:  # HTTP/2 pings on the ADS connection, as the agent's bootstrap sends them
        http2["connection_keepalive"] = {"interval": keepalive, "timeout": "5s"}
    return {
        "node": {"id": node.node_id, "cluster": node.cluster, "metadata": node.metadata()},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            },
            "cds_config": ads,
            "lds_config": ads,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "xds",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "xds",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": ads_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": "type.googleapis.com/"
                            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                            "explicit_http_config": {"http2_protocol_options": http2},
                        }
                    },
                }
            ]
        },
    }


StartEnvoy = Callable[..., Awaitable[EnvoyProc]]


@pytest.fixture
async def start_envoy(tmp_path: Path, free_port: Callable[[], int]) -> AsyncIterator[StartEnvoy]:
    """``await start_envoy(node, ads_port, delta=...)`` runs an Envoy until the test ends."""
    procs: list[EnvoyProc] = []

    async def start(
        node: NodeInfo, ads_port: int, *, delta: bool, keepalive: str | None = None
    ) -> EnvoyProc:
        admin_port = free_port()
        index = len(procs)
        config = tmp_path / f"envoy-{index}.json"
        config.write_text(
            json.dumps(bootstrap(node, ads_port, admin_port, delta=delta, keepalive=keepalive))
        )
        log_path = tmp_path / f"envoy-{index}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    str(envoy_binary()),
                    "-c",
                    str(config),
                    "--concurrency",
                    "1",
                    "--use-dynamic-base-id",
                    "--log-level",
                    "info",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        proc = EnvoyProc(process, admin_port, log_path)
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            if proc.process.poll() is None:
                proc.process.terminate()
        for proc in procs:
            try:
                proc.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()


@pytest.fixture
async def backends(free_port: Callable[[], int]) -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """``port = await backends("A")``: an HTTP server on loopback answering its name."""
    runners: list[web.AppRunner] = []

    async def start(name: str) -> int:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=name)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


StartServer = Callable[[Generator], Awaitable[DiscoveryServer]]


@pytest.fixture
async def xds_server() -> AsyncIterator[StartServer]:
    servers: list[DiscoveryServer] = []

    async def start(generator: Generator) -> DiscoveryServer:
        server = DiscoveryServer(
            XdsSettings(
                address="127.0.0.1:0",
                debounce=DebounceSettings(quiet=0.02, max_delay=0.2),
                ack_timeout=10.0,
            ),
            generator,
        )
        await server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            await server.stop(grace=0.1)


async def get(session: aiohttp.ClientSession, port: int) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}/", headers={"host": "svc"}) as response:
        return response.status, await response.text()


async def wait_for_body(
    session: aiohttp.ClientSession, port: int, expected: str, envoy: EnvoyProc, timeout: float = 30
) -> None:
    """Poll the listener until it answers ``expected`` (the route/backend is in place)."""
    end = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < end:
        if envoy.process.poll() is not None:
            raise AssertionError(f"Envoy exited:\n{envoy.log()[-3000:]}")
        with contextlib.suppress(aiohttp.ClientError, OSError):
            last = await get(session, port)
            if last == (200, expected):
                return
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"listener never answered {expected!r} (last {last!r}):\n{envoy.log()[-3000:]}"
    )
