"""The API worker's front (``apiserver.worker.Front``): which requests it answers from the store
and which it forwards to the control plane's API, in process (the control plane's API on a
Unix socket, both over one memory store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.api.kinds import APPLY_PATH, AUDIT_PATH, PROXY_STATUS_PATH
from pilotfish.apiserver.app import ApiServer, ApiSettings, ensure_builtin_namespaces
from pilotfish.apiserver.worker import Front
from pilotfish.config.store.memory import MemoryStore

ADMIN = "admin-s3cret"
VS_PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


class Setup:
    def __init__(self, client: TestClient[Any, Any], seen: list[str]) -> None:
        self.client = client
        #: The paths the control plane's API answered.
        self.seen = seen


async def _serve_upstream(store: MemoryStore, sock: Path, seen: list[str]) -> web.AppRunner:
    api = ApiServer(
        store,
        ApiSettings(
            tokens=frozenset({ADMIN}),
            proxy_status=lambda: [{"node_id": "sidecar~10.0.0.1~a.default~default.svc"}],
            forwarded=True,
        ),
    )
    app = api.app()

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        seen.append(request.path)

    app.on_response_prepare.append(record)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(sock)).start()
    return runner


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    store = MemoryStore()
    ensure_builtin_namespaces(store)
    sock, seen = tmp_path / "api.sock", []
    upstream = await _serve_upstream(store, sock, seen)
    front = Front(store, ADMIN, str(sock))
    client = TestClient(TestServer(front.app()))
    await client.start_server()
    try:
        yield Setup(client, seen)
    finally:
        await client.close()
        await upstream.cleanup()


VS = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews", "namespace": "default"},
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
}


async def test_reads_of_config_are_answered_by_the_worker(setup: Setup) -> None:
    resp = await setup.client.post(APPLY_PATH, json={"items": [VS]}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["items"][0]["result"] == "created"
    assert setup.seen == [APPLY_PATH], "the write went to the control plane"
    listed = await setup.client.get(VS_PATH, headers=AUTH)
    assert [i["metadata"]["name"] for i in (await listed.json())["items"]] == ["reviews"]
    one = await setup.client.get(f"{VS_PATH}/reviews", headers={**AUTH, "Accept": "yaml"})
    assert one.content_type == "application/yaml"
    assert "name: reviews" in await one.text()
    missing = await setup.client.get(f"{VS_PATH}/ratings", headers=AUTH)
    assert missing.status == 404
    assert 'virtualservices "ratings" not found' in (await missing.json())["message"]
    assert setup.seen == [APPLY_PATH], "the reads were answered by the worker"


async def test_what_needs_the_control_plane_is_forwarded(setup: Setup) -> None:
    status = await setup.client.get(PROXY_STATUS_PATH, headers=AUTH)
    assert (await status.json())["items"][0]["node_id"].startswith("sidecar~")
    refused = await setup.client.get(VS_PATH)
    assert refused.status == 401
    health = await setup.client.get("/healthz")
    assert await health.text() == "ok"
    await setup.client.post(APPLY_PATH, json={"items": [VS]}, headers=AUTH)
    audit = await (await setup.client.get(AUDIT_PATH, headers=AUTH)).json()
    assert audit["items"][-1]["sourceIP"] == "127.0.0.1", "the caller's address, forwarded"
    assert setup.seen == [PROXY_STATUS_PATH, VS_PATH, "/healthz", APPLY_PATH, AUDIT_PATH]


async def test_an_absent_control_plane_is_503(tmp_path: Path) -> None:
    store = MemoryStore()
    front = Front(store, ADMIN, str(tmp_path / "nothing.sock"))
    async with TestClient(TestServer(front.app())) as client:
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert "control plane is not answering" in (await resp.json())["message"]
