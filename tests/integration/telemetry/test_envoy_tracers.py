"""A real Envoy with Zipkin's tracer, and with OpenTelemetry's tracer over gRPC, reports the
span of a real request to the collector, found through ``/api/traces?service=...``."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.telemetry import TraceCollector
from tests.integration.telemetry.conftest import until

pytestmark = pytest.mark.integration

SERVICE = "productpage.default"
TYPE = "type.googleapis.com/"


def _cluster(
    name: str, port: int, *, http2: bool = False, address: str = "127.0.0.1"
) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": address, "port_value": port}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }
    if http2:
        cluster["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": TYPE + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return cluster


def zipkin_tracer(port: int, address: str = "127.0.0.1") -> tuple[dict[str, Any], dict[str, Any]]:
    provider = {
        "name": "envoy.tracers.zipkin",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
            "collector_cluster": "zipkin",
            "collector_endpoint": "/api/v2/spans",
            "collector_endpoint_version": "HTTP_JSON",
        },
    }
    return provider, _cluster("zipkin", port, address=address)


def otel_tracer(port: int, address: str = "127.0.0.1") -> tuple[dict[str, Any], dict[str, Any]]:
    provider = {
        "name": "envoy.tracers.opentelemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": "otlp"}, "timeout": "2s"},
            "service_name": SERVICE,
        },
    }
    return provider, _cluster("otlp", port, http2=True, address=address)


def bootstrap(
    provider: dict[str, Any], cluster: dict[str, Any], listen_port: int, admin_port: int
) -> dict[str, Any]:
    hcm = {
        "@type": TYPE
        + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "inbound",
        "generate_request_id": True,
        "tracing": {"random_sampling": {"value": 100}, "provider": provider},
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                            "decorator": {"operation": "GET /productpage"},
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
    return {
        "node": {
            "id": "sidecar~127.0.0.1~productpage-1.default~default.svc.cluster.local",
            "cluster": SERVICE,
        },
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        # Flush every span at once instead of every 5 s.
        "layered_runtime": {
            "layers": [
                {
                    "name": "static",
                    "static_layer": {
                        "tracing.zipkin.min_flush_spans": 1,
                        "tracing.zipkin.flush_interval_ms": 200,
                        "tracing.opentelemetry.min_flush_spans": 1,
                        "tracing.opentelemetry.flush_interval_ms": 200,
                    },
                }
            ]
        },
        "static_resources": {
            "listeners": [
                {
                    "name": "inbound",
                    "address": {
                        "socket_address": {"address": "127.0.0.1", "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [cluster],
        },
    }


StartEnvoy = Callable[[dict[str, Any]], Awaitable[None]]


@pytest.fixture
async def run_envoy(tmp_path: Path) -> AsyncIterator[StartEnvoy]:
    procs: list[subprocess.Popen[bytes]] = []

    async def start(config: dict[str, Any]) -> None:
        path = tmp_path / f"envoy-{len(procs)}.json"
        path.write_text(json.dumps(config))
        log = (tmp_path / f"envoy-{len(procs)}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    str(envoy_binary()),
                    "-c",
                    str(path),
                    "--concurrency",
                    "1",
                    "--use-dynamic-base-id",
                    "--log-level",
                    "info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
        log.close()

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def request_productpage(port: int) -> None:
    """GET /productpage through the Envoy listening on ``port`` until it answers 200 (one
    sampled request, or a few while Envoy starts)."""
    async with httpx.AsyncClient(timeout=5) as client:

        async def served() -> bool:
            try:
                r = await client.get(f"http://127.0.0.1:{port}/productpage")
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        await until(served, timeout=30, what=f"Envoy serving on {port}")


@pytest.mark.parametrize("tracer", ["zipkin", "opentelemetry"])
async def test_envoy_reports_a_span_found_by_service(
    tracer: str,
    collector: TraceCollector,
    query: Callable[..., Awaitable[Any]],
    run_envoy: StartEnvoy,
    free_port: Callable[[], int],
    tmp_path: Path,
) -> None:
    if tracer == "zipkin":
        provider, cluster = zipkin_tracer(collector.ports["zipkin"])
    else:
        provider, cluster = otel_tracer(collector.ports["otlp_grpc"])
    listen_port, admin_port = free_port(), free_port()
    await run_envoy(bootstrap(provider, cluster, listen_port, admin_port))

    await request_productpage(listen_port)

    found: list[dict[str, Any]] = []

    async def traced() -> bool:
        body = await query("/api/traces", service=SERVICE, lookback="1h")
        found[:] = body["data"]
        return bool(found)

    try:
        await until(traced, timeout=30, what=f"a span from Envoy's {tracer} tracer")
    except AssertionError:
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("*.log"))
        raise AssertionError(f"no span arrived; Envoy's log:\n{logs}") from None
    span = found[0]["spans"][0]
    assert span["operationName"] == "GET /productpage"
    tags = {t["key"]: t["value"] for t in span["tags"]}
    assert tags["http.status_code"] in ("200", 200)
    assert tags["span.kind"] == "server"
    assert found[0]["processes"][span["processID"]]["serviceName"] == SERVICE
    assert (await query("/api/services"))["data"] == [SERVICE]
