"""A trace collector on free ports in this process, and a client for its query API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.telemetry import CollectorSettings, TraceCollector
from tests.integration.harness import control_plane, control_plane_factory, mesh

__all__ = ["collector", "control_plane", "control_plane_factory", "mesh", "query"]


@pytest.fixture
async def collector(tmp_path: Path, free_port: Callable[[], int]) -> AsyncIterator[TraceCollector]:
    settings = CollectorSettings(
        data_dir=tmp_path,
        host="127.0.0.1",
        otlp_grpc_port=free_port(),
        otlp_http_port=free_port(),
        zipkin_port=free_port(),
        query_port=free_port(),
    )
    c = TraceCollector(settings)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def query(collector: TraceCollector) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await query("/api/traces", service=...)``: the JSON body (asserting HTTP 200)."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{collector.ports['query']}", timeout=10
    ) as client:

        async def get(path: str, expect: int = 200, **params: Any) -> Any:
            response = await client.get(path, params=params)
            assert response.status_code == expect, response.text
            return response.json()

        yield get


async def until(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")
