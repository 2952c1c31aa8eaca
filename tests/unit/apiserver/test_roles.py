"""Roles of API tokens and the audit log, in process over a memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.api.kinds import API_TOKENS_PATH, APPLY_PATH, AUDIT_PATH, DELETE_PATH
from pilotfish.apiserver.app import ApiServer, ApiSettings, ensure_builtin_namespaces
from pilotfish.config.store.memory import MemoryStore

ADMIN = "admin-s3cret"
WORKLOAD = "header.claims.signature"
VS_PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"
SECRETS_PATH = "/api/v1/namespaces/default/secrets"


def vs(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}]}]},
    }


class Api:
    def __init__(self, client: TestClient[Any, Any], store: MemoryStore) -> None:
        self.client, self.store = client, store

    async def call(
        self, token: str, method: str, path: str, status: int, **kw: Any
    ) -> dict[str, Any]:
        resp = await self.client.request(
            method, path, headers={"Authorization": f"Bearer {token}"}, **kw
        )
        body = await resp.json()
        assert resp.status == status, body
        return dict(body)

    async def token(self, name: str, role: str) -> str:
        made = await self.call(
            ADMIN, "POST", API_TOKENS_PATH, 201, json={"name": name, "role": role}
        )
        assert made["role"] == role and made["name"] == name
        return str(made["token"])


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    store = MemoryStore()
    ensure_builtin_namespaces(store)

    def workload(token: str) -> tuple[str, str] | None:
        return ("default", "reviews") if token == WORKLOAD else None

    settings = ApiSettings(tokens=frozenset({ADMIN}), workload_tokens=workload)
    client = TestClient(TestServer(ApiServer(store, settings).app()))
    await client.start_server()
    try:
        yield Api(client, store)
    finally:
        await client.close()


async def test_read_only_token_gets_but_cannot_apply_or_delete(api: Api) -> None:
    await api.call(ADMIN, "POST", APPLY_PATH, 200, json={"items": [vs("reviews")]})
    viewer = await api.token("ci-viewer", "read-only")
    listed = await api.call(viewer, "GET", VS_PATH, 200)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]
    await api.call(viewer, "GET", f"{VS_PATH}/reviews", 200)

    refused = await api.call(viewer, "POST", APPLY_PATH, 403, json={"items": [vs("ratings")]})
    assert refused["reason"] == "Forbidden"
    assert 'user "ci-viewer" (role read-only) cannot apply' in refused["message"]
    refused = await api.call(viewer, "DELETE", f"{VS_PATH}/reviews", 403)
    assert "role read-only" in refused["message"] and "delete virtualservices" in refused["message"]
    body = {"items": [{"kind": "VirtualService", "name": "reviews"}]}
    await api.call(viewer, "POST", DELETE_PATH, 403, json=body)
    await api.call(viewer, "PUT", f"{VS_PATH}/reviews", 403, json=vs("reviews"))
    # Nothing changed, and nothing was audited for the refused requests.
    listed = await api.call(ADMIN, "GET", VS_PATH, 200)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["reviews"]
    verbs = [e["verb"] for e in (await api.call(ADMIN, "GET", AUDIT_PATH, 200))["items"]]
    assert verbs == ["apply", "create"]  # the admin's apply, the token's creation


async def test_read_only_token_reads_no_secrets_nor_tokens(api: Api) -> None:
    viewer = await api.token("viewer", "read-only")
    refused = await api.call(viewer, "GET", SECRETS_PATH, 403)
    assert "does not read Secrets" in refused["message"]
    await api.call(viewer, "GET", API_TOKENS_PATH, 403)
    await api.call(viewer, "POST", API_TOKENS_PATH, 403, json={"name": "x", "role": "admin"})
    assert (await api.call(viewer, "GET", AUDIT_PATH, 200))["kind"] == "AuditList"


async def test_workload_token_cannot_list_config(api: Api) -> None:
    refused = await api.call(WORKLOAD, "GET", VS_PATH, 403)
    assert 'user "system:serviceaccount:default:reviews" (role workload)' in refused["message"]
    assert "only fetch their own certificate" in refused["message"]
    await api.call(WORKLOAD, "POST", APPLY_PATH, 403, json={"items": [vs("x")]})
    # An unknown token is still 401, not 403.
    await api.call("nope.nope.nope", "GET", VS_PATH, 401)


async def test_audit_records_apply_and_delete_with_token_name_and_revision(api: Api) -> None:
    deployer = await api.token("deployer", "admin")
    applied = await api.call(deployer, "POST", APPLY_PATH, 200, json={"items": [vs("reviews")]})
    await api.call(deployer, "DELETE", f"{VS_PATH}/reviews", 200)
    entries = (await api.call(ADMIN, "GET", AUDIT_PATH, 200))["items"]
    apply, delete = entries[-2], entries[-1]
    assert apply["user"] == "deployer" and apply["role"] == "admin" and apply["verb"] == "apply"
    assert apply["revision"] == applied["revision"]
    assert apply["objects"][0]["name"] == "reviews"
    assert delete["verb"] == "delete" and delete["user"] == "deployer"
    assert delete["revision"] == api.store.revision() == applied["revision"] + 1
    assert delete["objects"] == [
        {"kind": "VirtualService", "namespace": "default", "name": "reviews", "result": "deleted"}
    ]
    assert delete["time"].endswith("Z")
    # A no-op apply changes nothing and is not audited; limit keeps the newest.
    await api.call(deployer, "POST", APPLY_PATH, 200, json={"items": []})
    last = (await api.call(ADMIN, "GET", f"{AUDIT_PATH}?limit=1", 200))["items"]
    assert last == [delete]


async def test_revoked_token_stops_working_and_names_are_checked(api: Api) -> None:
    viewer = await api.token("viewer", "read-only")
    await api.call(viewer, "GET", VS_PATH, 200)
    await api.call(ADMIN, "DELETE", f"{API_TOKENS_PATH}/viewer", 200)
    await api.call(viewer, "GET", VS_PATH, 401)
    await api.call(ADMIN, "DELETE", f"{API_TOKENS_PATH}/viewer", 404)
    bad = await api.call(ADMIN, "POST", API_TOKENS_PATH, 422, json={"name": "x", "role": "root"})
    assert bad["details"]["causes"][0]["field"] == "role"
    await api.call(ADMIN, "POST", API_TOKENS_PATH, 422, json={"name": "admin", "role": "admin"})
    await api.token("twice", "admin")
    await api.call(ADMIN, "POST", API_TOKENS_PATH, 409, json={"name": "twice", "role": "admin"})
    listed = (await api.call(ADMIN, "GET", API_TOKENS_PATH, 200))["items"]
    assert [(t["name"], t["role"]) for t in listed] == [("twice", "admin")]
    assert all("digest" not in t and "token" not in t for t in listed)
