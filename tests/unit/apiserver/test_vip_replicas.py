"""VIPs allocated by two control-plane replicas on one store: a hash collision between two
hostnames applied through different replicas at the same moment never stores one address
twice; the later apply gets the next free address. A user's duplicate ``clusterIP`` is refused
naming the field and the Service holding it (Kubernetes refuses it too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from pilotfish.api.kinds import APPLY_PATH
from pilotfish.api.mesh import service_fqdn
from pilotfish.api.objects import ResourceKey
from pilotfish.apiserver.app import ApiServer, ApiSettings, ensure_builtin_namespaces
from pilotfish.config.store.memory import MemoryStore
from pilotfish.registry.vip import VipAllocator

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Hostnames whose hashes give the allocator the same first choice.
SERVICES = ("svc-104", "svc-131")
HOSTS = ("api-1.example.com", "api-118.example.com")


class Replica:
    def __init__(self, client: TestClient[Any, Any], vips: VipAllocator) -> None:
        self.client, self.vips = client, vips

    async def apply(self, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        resp = await self.client.post(APPLY_PATH, headers=AUTH, json={"items": [body]})
        out = dict(await resp.json())
        assert resp.status == status, out
        return out


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[MemoryStore, Replica, Replica]]:
    store = MemoryStore()
    ensure_builtin_namespaces(store)
    made = []
    for _ in range(2):
        vips = VipAllocator()
        client = TestClient(
            TestServer(ApiServer(store, ApiSettings(tokens=frozenset({TOKEN}), vips=vips)).app())
        )
        await client.start_server()
        made.append(Replica(client, vips))
    try:
        yield store, made[0], made[1]
    finally:
        for r in made:
            await r.client.close()


def service(name: str, cluster_ip: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": name}, "ports": [{"port": 80, "name": "http"}]}
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def entry(name: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name},
        "spec": {
            "hosts": [host],
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "resolution": "NONE",
        },
    }


def test_the_names_collide() -> None:
    a, b = (service_fqdn(n, "default") for n in SERVICES)
    assert VipAllocator().allocate(a) == VipAllocator().allocate(b)
    assert VipAllocator().allocate(HOSTS[0]) == VipAllocator().allocate(HOSTS[1])


async def test_colliding_services_through_two_replicas_get_two_addresses(
    replicas: tuple[MemoryStore, Replica, Replica],
) -> None:
    store, a, b = replicas
    # Replica b allocates for its Service before a's commit reaches the store...
    early = b.vips.allocate(service_fqdn(SERVICES[1], "default"))
    await a.apply(service(SERVICES[0]))
    first = store.get(ResourceKey("Service", "default", SERVICES[0]))
    assert first is not None and first.body["spec"]["clusterIP"] == early
    # ...and commits after it: the store refuses the address, b takes the next free one.
    result = await b.apply(service(SERVICES[1]))
    assert result["items"][0]["result"] == "created"
    second = store.get(ResourceKey("Service", "default", SERVICES[1]))
    assert second is not None
    assert second.body["spec"]["clusterIP"] not in (early, None)
    assert b.vips.allocate(service_fqdn(SERVICES[1], "default")) == second.body["spec"]["clusterIP"]


async def test_colliding_service_entry_hosts_through_two_replicas_get_two_addresses(
    replicas: tuple[MemoryStore, Replica, Replica],
) -> None:
    # ServiceEntry VIPs are seeded from the replica's registry, which has not seen the other
    # replica's commit yet: a real race, no injection.
    store, a, b = replicas
    await a.apply(entry("one", HOSTS[0]))
    await b.apply(entry("two", HOSTS[1]))
    one = store.get(ResourceKey("ServiceEntry", "default", "one"))
    two = store.get(ResourceKey("ServiceEntry", "default", "two"))
    assert one is not None and two is not None
    ip_one = one.body["status"]["addresses"][0]["value"]
    ip_two = two.body["status"]["addresses"][0]["value"]
    assert ip_one == VipAllocator().allocate(HOSTS[0])
    assert ip_two != ip_one
    assert two.body["status"]["addresses"][0]["host"] == HOSTS[1]


async def test_a_users_duplicate_cluster_ip_is_refused_naming_the_field_and_holder(
    replicas: tuple[MemoryStore, Replica, Replica],
) -> None:
    store, a, b = replicas
    await a.apply(service("reviews", "10.96.9.9"))
    refused = await b.apply(service("ratings", "10.96.9.9"), status=422)
    assert "spec.clusterIP" in refused["message"]
    assert "Service default/reviews" in refused["message"]
    assert "Service default/ratings" in refused["message"]
    assert store.get(ResourceKey("Service", "default", "ratings")) is None
    # Updating the holder with its own address still passes.
    await a.apply(service("reviews", "10.96.9.9"))


def colliding_pairs(count: int) -> list[tuple[str, str]]:
    """``count`` pairs of ServiceEntry hosts, each pair with one first choice of its own."""
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    used: set[str] = set()
    for i in range(100_000):
        host = f"ext-{i}.example.com"
        ip = VipAllocator().allocate(host)
        if ip in seen and ip not in used:
            pairs.append((seen[ip], host))
            used.add(ip)
            if len(pairs) == count:
                return pairs
        seen.setdefault(ip, host)
    raise AssertionError("not enough colliding hostnames")


async def test_a_batch_with_many_collisions_gets_an_address_for_each(
    replicas: tuple[MemoryStore, Replica, Replica],
) -> None:
    """More collisions in one batch than the spare attempts: each refusal settles one."""
    store, a, b = replicas
    pairs = colliding_pairs(20)
    for i, (host, _) in enumerate(pairs):
        await a.apply(entry(f"a-{i}", host))
    resp = await b.client.post(
        APPLY_PATH,
        headers=AUTH,
        json={"items": [entry(f"b-{i}", host) for i, (_, host) in enumerate(pairs)]},
    )
    assert resp.status == 200, await resp.text()
    held: dict[str, str] = {}
    for obj in store.list("ServiceEntry"):
        for addr in obj.body["status"]["addresses"]:
            assert addr["value"] not in held, (addr, held[addr["value"]])
            held[addr["value"]] = addr["host"]
    assert len(held) == 40


async def test_a_dry_run_refuses_a_users_duplicate_cluster_ip_as_the_apply_would(
    replicas: tuple[MemoryStore, Replica, Replica],
) -> None:
    store, a, b = replicas
    await a.apply(service("reviews", "10.96.9.9"))
    resp = await b.client.post(
        APPLY_PATH + "?dryRun=All", headers=AUTH, json={"items": [service("ratings", "10.96.9.9")]}
    )
    refused = await resp.json()
    assert resp.status == 422, refused
    assert "spec.clusterIP" in refused["message"]
    assert "Service default/reviews" in refused["message"]
    # The holder's own address, and a free one, pass the dry run; nothing is stored.
    for body in (service("reviews", "10.96.9.9"), service("ratings", "10.96.9.10")):
        resp = await b.client.post(APPLY_PATH + "?dryRun=All", headers=AUTH, json={"items": [body]})
        assert resp.status == 200, await resp.json()
    assert store.get(ResourceKey("Service", "default", "ratings")) is None
