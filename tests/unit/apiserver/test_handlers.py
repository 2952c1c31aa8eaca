"""The HTTP API's handlers, in process: an aiohttp test client over a memory store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.api.kinds import (
    APPLY_PATH,
    DELETE_PATH,
    PROXY_STATUS_PATH,
    proxy_config_path,
    proxy_explain_path,
)
from pilotfish.api.mesh import service_fqdn
from pilotfish.api.objects import ResourceKey
from pilotfish.apiserver.app import ApiServer, ApiSettings, ensure_builtin_namespaces
from pilotfish.config.store.base import Put
from pilotfish.config.store.memory import MemoryStore
from pilotfish.registry.vip import VipAllocator

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VS_PATH = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"


def virtual_service(name: str = "reviews", weight: int = 100) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [name],
            "http": [{"route": [{"destination": {"host": name}, "weight": weight}]}],
        },
    }


def service(name: str, cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 9080, "name": "http"}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


class Api:
    def __init__(self, client: TestClient[Any, Any], store: MemoryStore, vips: VipAllocator):
        self.client, self.store, self.vips = client, store, vips

    async def call(
        self, method: str, path: str, status: int = 200, **kwargs: Any
    ) -> dict[str, Any]:
        resp = await self.client.request(method, path, headers=AUTH, **kwargs)
        body = await resp.json()
        assert resp.status == status, body
        return dict(body)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    store = MemoryStore()
    ensure_builtin_namespaces(store)
    vips = VipAllocator()
    settings = ApiSettings(
        tokens=frozenset({TOKEN}),
        proxy_status=lambda: [{"proxy": "reviews-v1.default", "CDS": "SYNCED"}],
        proxy_config=lambda ns, name: {"clusters": []} if name == "reviews-v1" else None,
        explain=lambda ns, name, method, url, headers: (
            {"asked": [method, url, headers]} if name == "reviews-v1" else None
        ),
        vips=vips,
    )
    client = TestClient(TestServer(ApiServer(store, settings).app()))
    await client.start_server()
    try:
        yield Api(client, store, vips)
    finally:
        await client.close()


async def test_health_and_version_need_no_token_everything_else_does(api: Api) -> None:
    assert (await api.client.get("/healthz")).status == 200
    assert (await api.client.get("/version")).status == 200
    resp = await api.client.get(VS_PATH)
    assert resp.status == 401
    assert (await resp.json())["reason"] == "Unauthorized"
    wrong = await api.client.get(VS_PATH, headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401


async def test_create_get_list_update_delete_one_resource(api: Api) -> None:
    created = await api.call("POST", VS_PATH, status=201, json=virtual_service())
    version = created["metadata"]["resourceVersion"]
    got = await api.call("GET", f"{VS_PATH}/reviews")
    assert got["spec"]["hosts"] == ["reviews"]
    listed = await api.call("GET", VS_PATH)
    assert listed["kind"] == "VirtualServiceList"
    assert [o["metadata"]["name"] for o in listed["items"]] == ["reviews"]
    again = await api.call("POST", VS_PATH, status=409, json=virtual_service())
    assert again["reason"] == "AlreadyExists"

    update = virtual_service(weight=100)
    update["metadata"]["resourceVersion"] = version
    update["spec"]["http"][0]["timeout"] = "3s"
    await api.call("PUT", f"{VS_PATH}/reviews", json=update)
    stale = await api.call("PUT", f"{VS_PATH}/reviews", status=409, json=update)
    assert stale["reason"] == "Conflict"

    await api.call("DELETE", f"{VS_PATH}/reviews")
    gone = await api.call("GET", f"{VS_PATH}/reviews", status=404)
    assert gone["reason"] == "NotFound"
    assert api.store.get(ResourceKey("VirtualService", "default", "reviews")) is None


async def test_invalid_bodies_get_a_422_status_naming_each_field(api: Api) -> None:
    bad = await api.call("POST", VS_PATH, status=422, json=virtual_service(weight=-1))
    assert bad["kind"] == "Status"
    assert bad["reason"] == "Invalid"
    fields = [c["field"] for c in bad["details"]["causes"]]
    assert fields == ["spec.http[0].route[0].weight"]
    assert "VirtualService default/reviews" in bad["message"]


async def test_unknown_paths_and_kinds_are_404(api: Api) -> None:
    unknown = await api.call("GET", "/apis/networking.istio.io/v1/widgets", status=404)
    assert unknown["reason"] == "NotFound"


async def test_lists_answer_yaml_when_asked(api: Api) -> None:
    await api.call("POST", VS_PATH, status=201, json=virtual_service())
    resp = await api.client.get(VS_PATH, headers={**AUTH, "Accept": "application/yaml"})
    assert resp.status == 200
    doc = yaml.safe_load(await resp.text())
    assert doc["items"][0]["metadata"]["name"] == "reviews"


async def test_apply_is_one_transaction_and_reports_each_item(api: Api) -> None:
    body: dict[str, Any] = {"items": [virtual_service("a"), virtual_service("b")]}
    first = await api.call("POST", APPLY_PATH, json=body)
    assert [(i["name"], i["result"]) for i in first["items"]] == [
        ("a", "created"),
        ("b", "created"),
    ]
    body["items"][1] = virtual_service("b", weight=100)
    body["items"][1]["spec"]["http"][0]["timeout"] = "1s"
    second = await api.call("POST", APPLY_PATH, json=body)
    assert [i["result"] for i in second["items"]] == ["unchanged", "configured"]

    broken = {"items": [virtual_service("c"), virtual_service("d", weight=-5)]}
    failed = await api.call("POST", APPLY_PATH, status=422, json=broken)
    assert "VirtualService default/d" in failed["message"]
    assert api.store.get(ResourceKey("VirtualService", "default", "c")) is None


async def test_apply_dry_run_stores_nothing(api: Api) -> None:
    before = api.store.revision()
    result = await api.call("POST", APPLY_PATH, json={"items": [virtual_service()], "dryRun": True})
    assert result["dryRun"] is True
    assert result["items"][0]["result"] == "created"
    assert api.store.revision() == before


async def test_apply_needs_the_namespace_to_exist(api: Api) -> None:
    vs = virtual_service()
    vs["metadata"]["namespace"] = "nowhere"
    failed = await api.call("POST", APPLY_PATH, status=422, json={"items": [vs]})
    assert "nowhere" in failed["message"]


async def test_services_get_cluster_ips_from_the_shared_allocator(api: Api) -> None:
    taken = api.vips.allocate("api.example.com")  # a ServiceEntry host's VIP, say
    result = await api.call(
        "POST", APPLY_PATH, json={"items": [service("reviews"), service("ratings", "10.96.9.9")]}
    )
    assert [i["result"] for i in result["items"]] == ["created", "created"]
    reviews = api.store.get(ResourceKey("Service", "default", "reviews"))
    ratings = api.store.get(ResourceKey("Service", "default", "ratings"))
    assert reviews is not None and ratings is not None
    ip = reviews.body["spec"]["clusterIP"]
    assert ip == api.vips.allocate(service_fqdn("reviews", "default"))
    assert ip not in (taken, "10.96.9.9")
    assert ratings.body["spec"]["clusterIP"] == "10.96.9.9"
    assert api.vips.assigned()[service_fqdn("ratings", "default")] == "10.96.9.9"


async def test_delete_batch_and_its_dry_run(api: Api) -> None:
    await api.call("POST", APPLY_PATH, json={"items": [virtual_service()]})
    item = {"kind": "VirtualService", "namespace": "default", "name": "reviews"}
    await api.call("POST", f"{DELETE_PATH}?dryRun=All", json={"items": [item]})
    assert api.store.get(ResourceKey("VirtualService", "default", "reviews")) is not None
    dry = await api.call("POST", DELETE_PATH, json={"items": [item], "dryRun": True})
    assert dry["dryRun"] is True
    assert api.store.get(ResourceKey("VirtualService", "default", "reviews")) is not None
    await api.call("POST", DELETE_PATH, json={"items": [item]})
    assert api.store.get(ResourceKey("VirtualService", "default", "reviews")) is None


async def test_proxy_status_and_config_come_from_the_providers(api: Api) -> None:
    status = await api.call("GET", PROXY_STATUS_PATH)
    assert status == {
        "kind": "ProxyStatusList",
        "items": [{"proxy": "reviews-v1.default", "CDS": "SYNCED"}],
    }
    config = await api.call("GET", proxy_config_path("default", "reviews-v1"))
    assert config == {
        "kind": "ProxyConfig",
        "name": "reviews-v1",
        "namespace": "default",
        "clusters": [],
    }
    missing = await api.call("GET", proxy_config_path("default", "ghost"), status=404)
    assert "not connected" in missing["message"]


async def test_explain_passes_the_request_and_refuses_bad_bodies_by_field(api: Api) -> None:
    path = proxy_explain_path("default", "reviews-v1")
    body = {"method": "POST", "url": "http://ratings:9080/", "headers": {"End-User": "jason"}}
    out = await api.call("POST", path, json=body)
    assert out == {
        "kind": "Explanation",
        "asked": ["POST", "http://ratings:9080/", {"end-user": "jason"}],
    }
    bad = await api.call("POST", path, status=422, json={"method": "GET"})
    assert bad["details"]["causes"][0]["field"] == "url"
    bad = await api.call("POST", path, status=422, json={"url": "http://x/", "method": "GE T"})
    assert bad["details"]["causes"][0]["field"] == "method"
    bad = await api.call("POST", path, status=422, json={"url": "http://x/", "headers": {"a": 1}})
    assert bad["details"]["causes"][0]["field"] == "headers"
    ghost = proxy_explain_path("default", "ghost")
    missing = await api.call("POST", ghost, status=404, json={"url": "http://x/"})
    assert "not connected" in missing["message"]


async def test_apply_keeps_the_status_a_controller_wrote_for_a_canary(api: Api) -> None:
    canary: dict[str, Any] = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo"},
        "spec": {
            "targetRef": {"name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "2s", "threshold": 5, "stepWeight": 10},
        },
    }
    await api.call("POST", APPLY_PATH, json={"items": [canary]})
    key = ResourceKey("Canary", "default", "podinfo")
    stored = api.store.get(key)
    assert stored is not None
    api.store.commit([Put({**stored.body, "status": {"phase": "Progressing"}})])
    again = await api.call("POST", APPLY_PATH, json={"items": [canary]})
    assert [i["result"] for i in again["items"]] == ["unchanged"]
    canary["spec"]["analysis"]["threshold"] = 6
    await api.call("POST", APPLY_PATH, json={"items": [canary]})
    stored = api.store.get(key)
    assert stored is not None
    assert stored.body["status"] == {"phase": "Progressing"}
    assert stored.body["spec"]["analysis"]["threshold"] == 6


async def test_service_entry_hosts_get_vips_in_status_addresses(api: Api) -> None:
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "ext"},
        "spec": {
            "hosts": ["api.example.com", "*.wild.example.com"],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "NONE",
        },
    }
    await api.call("POST", APPLY_PATH, json={"items": [entry]})
    stored = api.store.get(ResourceKey("ServiceEntry", "default", "ext"))
    assert stored is not None
    # Wildcards get none (as Istio's auto-allocation); the VIP is the registry's.
    assert stored.body["status"]["addresses"] == [
        {"value": api.vips.allocate("api.example.com"), "host": "api.example.com"}
    ]
    # An entry with addresses of its own gets no allocated ones.
    entry["spec"]["addresses"] = ["240.0.0.9"]
    await api.call("POST", APPLY_PATH, json={"items": [entry]})
    stored = api.store.get(ResourceKey("ServiceEntry", "default", "ext"))
    assert stored is not None and "status" not in stored.body
