"""Drain with a real Envoy: an in-flight slow request completes, new connections are refused."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.agent.bootstrap import (
    load_assignment,
    render_bootstrap,
    socket_address,
    write_bootstrap,
)
from pilotfish.agent.process import pids_alive
from pilotfish.agent.settings import HostPort
from pilotfish.agent.supervisor import EnvoySupervisor, SupervisorSettings

from .conftest import eventually, http_get, loopback_settings

pytestmark = pytest.mark.integration


class SlowBackend:
    """Loopback HTTP server: ``/slow`` answers only after :attr:`release` is set."""

    def __init__(self, port: int) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/slow":
                    backend.arrived.set()
                    backend.release.wait(timeout=60)
                body = f"{self.path[1:]}-ok".encode()
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def slow_backend(free_port: Callable[[], int]) -> Iterator[tuple[SlowBackend, int]]:
    port = free_port()
    backend = SlowBackend(port)
    backend.thread.start()
    try:
        yield backend, port
    finally:
        backend.release.set()
        backend.server.shutdown()
        backend.server.server_close()


def _static_bootstrap(settings: Any, app_port: int, backend_port: int) -> dict[str, Any]:
    """The agent's bootstrap without ADS, plus an HTTP listener routing to the backend."""
    boot = render_bootstrap(settings)
    del boot["dynamic_resources"]
    boot["static_resources"]["clusters"].append(
        {
            "name": "backend",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": load_assignment("backend", HostPort("127.0.0.1", backend_port)),
        }
    )
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "app",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "app",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {"cluster": "backend", "timeout": "60s"},
                        }
                    ],
                }
            ]
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    boot["static_resources"]["listeners"].append(
        {
            "name": "app",
            "stat_prefix": "app",
            "address": socket_address("127.0.0.1", app_port),
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                              "typed_config": hcm}]}
            ],
        }
    )  # fmt: skip
    return boot


@pytest.mark.parametrize("listener_drain_s", [0, 1])
async def test_inflight_request_finishes_and_new_connections_are_refused(
    listener_drain_s: int,
    tmp_path: Path,
    free_port: Callable[[], int],
    slow_backend: tuple[SlowBackend, int],
) -> None:
    backend, backend_port = slow_backend
    settings = loopback_settings(tmp_path, free_port)
    app_port = free_port()
    write_bootstrap(_static_bootstrap(settings, app_port, backend_port), settings.bootstrap_path)
    supervisor = EnvoySupervisor(
        SupervisorSettings(
            bootstrap_path=settings.bootstrap_path,
            admin_port=settings.admin_port,
            concurrency=1,
            require_xds=False,
            listener_drain_s=listener_drain_s,
            log_level="info",
            log_path=tmp_path / "envoy.log",
        )
    )
    app_url = f"http://127.0.0.1:{app_port}"
    drain: asyncio.Task[None] | None = None
    pid = None
    try:
        await supervisor.start()
        pid = supervisor.pid
        assert await supervisor.wait_ready(timeout_s=30)
        fast = await http_get(f"{app_url}/fast")
        assert fast is not None and fast.text == "fast-ok"

        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            inflight = asyncio.create_task(client.get(f"{app_url}/slow"))
            await eventually(backend.arrived.is_set, what="the slow request at the backend")

            drain = asyncio.create_task(supervisor.drain_and_stop(drain_seconds=60))
            await eventually(
                lambda: _refused(f"{app_url}/fast"), what="new connections to be refused"
            )
            readiness = await supervisor.readiness()
            assert (readiness.ready, readiness.reason) == (False, "draining")
            # The in-flight request holds the drain open: Envoy is still there.
            assert not drain.done()
            assert supervisor.pid == pid

            backend.release.set()
            response = await inflight
        assert response.status_code == 200
        assert response.text == "slow-ok"
        await asyncio.wait_for(drain, timeout=30)
    finally:
        backend.release.set()
        if drain is not None and not drain.done():
            drain.cancel()
        await supervisor.stop()
    assert pid is not None and pids_alive([pid]) == []


async def _refused(url: str) -> bool:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        try:
            await client.get(url)
        except httpx.ConnectError:
            return True
        except httpx.TransportError:
            # Accepted while the listener was closing, then closed: not refused yet.
            return False
    return False
