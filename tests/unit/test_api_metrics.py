"""The API port's access rules and monitoring endpoints: /metrics, /healthz and /ready open
(as istiod's are), everything else needs the token; validation is counted."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.apiserver.app import ApiServer, ApiSettings
from pilotfish.config.store.memory import MemoryStore
from pilotfish.telemetry.pilot import PilotMetrics

TOKEN = "secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client() -> TestClient:  # type: ignore[misc]
    metrics = PilotMetrics("0.1.0")
    api = ApiServer(
        MemoryStore(),
        ApiSettings(
            tokens=frozenset({TOKEN}),
            metrics=metrics.exposition,
            on_validated=metrics.validated,
        ),
    )
    async with TestClient(TestServer(api.app())) as c:
        yield c


async def test_open_and_protected_paths(client: TestClient) -> None:
    for path in ("/metrics", "/healthz", "/ready", "/version"):
        resp = await client.get(path)
        assert resp.status == 200, path
    metrics = await client.get("/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'istio_build{component="pilot",tag="0.1.0"} 1' in await metrics.text()
    for path in ("/api/v1/namespaces", "/apis/pilotfish.io/v1/proxystatus", "/metricsx"):
        resp = await client.get(path)
        assert resp.status == 401, path
    assert (await client.get("/api/v1/namespaces", headers=AUTH)).status == 200


async def test_validation_failures_are_counted(client: TestClient) -> None:
    bad = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {
            "hosts": ["r"],
            "http": [{"route": [{"destination": {"host": "r"}, "weight": -1}]}],
        },
    }
    resp = await client.post("/apis/pilotfish.io/v1/apply", json={"items": [bad]}, headers=AUTH)
    assert resp.status == 422
    text = await (await client.get("/metrics")).text()
    assert (
        'galley_validation_failed{resource="virtualservices",reason="invalid_resource"} 1' in text
    )
