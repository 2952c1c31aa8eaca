"""The collector's lifecycle: retention through the running collector, a taken port, restart."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from pilotfish.telemetry import CollectorSettings, TraceCollector

pytestmark = pytest.mark.integration


def zipkin_span(trace: str, start_us: int) -> dict[str, object]:
    return {
        "traceId": trace,
        "id": trace,
        "name": "GET /",
        "timestamp": start_us,
        "duration": 10,
        "localEndpoint": {"serviceName": "reviews.default"},
    }


def settings(tmp_path: Path, free_port: Callable[[], int], **kw: object) -> CollectorSettings:
    return CollectorSettings(
        data_dir=tmp_path,
        otlp_grpc_port=None,
        otlp_http_port=None,
        zipkin_port=free_port(),
        query_port=free_port(),
        **kw,  # type: ignore[arg-type]
    )


async def test_retention_and_restart(tmp_path: Path, free_port: Callable[[], int]) -> None:
    collector = TraceCollector(settings(tmp_path, free_port, max_age=3600.0))
    await collector.start()
    now = int(time.time() * 1_000_000)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            zipkin = f"http://127.0.0.1:{collector.ports['zipkin']}/api/v2/spans"
            old, new = "00000000000000a1", "00000000000000a2"
            spans = [zipkin_span(old, now - 7200 * 1_000_000), zipkin_span(new, now - 1000)]
            assert (await client.post(zipkin, json=spans)).status_code == 202
            assert await collector.enforce_retention() == 1
            api = f"http://127.0.0.1:{collector.ports['query']}/api/traces/"
            assert (await client.get(api + old)).status_code == 404
            assert (await client.get(api + new)).status_code == 200
    finally:
        await collector.stop()

    # Spans survive a restart of the collector on the same data directory.
    again = TraceCollector(settings(tmp_path, free_port))
    await again.start()
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            url = f"http://127.0.0.1:{again.ports['query']}/api/traces/00000000000000a2"
            assert (await client.get(url)).status_code == 200
    finally:
        await again.stop()


async def test_taken_port_fails_start_and_releases_the_others(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = CollectorSettings(
            data_dir=tmp_path,
            otlp_grpc_port=None,
            otlp_http_port=free_port(),
            zipkin_port=port,
            query_port=None,
        )
        collector = TraceCollector(s)
        with pytest.raises(OSError):
            await collector.start()
        assert collector.ports == {}
    # The HTTP port it had bound is free again.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", s.otlp_http_port or 0))
