"""One VIP, one hostname: two writers that allocate the same address at once cannot both
store it, on every backend (two store instances on one database for SQLite and PostgreSQL,
as two control-plane replicas have)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from pilotfish.api.objects import ResourceKey
from pilotfish.config.store import Delete, Key, MemoryStore, Put, SqliteStore, Store
from pilotfish.errors import AddressTakenError
from pilotfish.registry.vip import VipAllocator

from .conftest import MakeStore

pytestmark = pytest.mark.timeout(120)

# Two hostnames whose hashes give the allocator the same first choice.
HOST_A = "svc-104.default.svc.cluster.local"
HOST_B = "svc-131.default.svc.cluster.local"


def service(name: str, ip: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
    }


def entry(name: str, host: str, ip: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hosts": [host], "ports": [{"number": 80, "name": "http"}]},
        "status": {"addresses": [{"value": ip, "host": host}]},
    }


def replica(store: Store) -> Store:
    """A second store on the same data (another control plane's)."""
    if isinstance(store, MemoryStore):
        return store
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    from pilotfish.config.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    return PostgresStore(store.dsn)


def test_hostnames_collide() -> None:
    assert VipAllocator().allocate(HOST_A) == VipAllocator().allocate(HOST_B)


def test_the_second_writer_of_a_colliding_address_gets_the_next_one(make_store: MakeStore) -> None:
    first = make_store()
    second = replica(first)
    try:
        # Each replica allocates from what it saw: the store before the other's commit.
        vips_a, vips_b = VipAllocator(), VipAllocator()
        ip_a, ip_b = vips_a.allocate(HOST_A), vips_b.allocate(HOST_B)
        assert ip_a == ip_b
        first.commit([Put(service("svc-104", ip_a))])
        with pytest.raises(AddressTakenError) as refused:
            second.commit([Put(service("svc-131", ip_b))])
        err = refused.value
        assert err.address == ip_a
        assert err.key == Key("Service", "default", "svc-131")
        assert err.holder == Key("Service", "default", "svc-104")
        assert "svc-104" in str(err) and ip_a in str(err)
        assert second.get(Key("Service", "default", "svc-131")) is None
        retry = vips_b.reassign(HOST_B, err.address, HOST_A)
        assert retry != ip_a
        second.commit([Put(service("svc-131", retry))])
        stored = {o.name: o.body["spec"]["clusterIP"] for o in first.list("Service")}
        assert stored == {"svc-104": ip_a, "svc-131": retry}
    finally:
        if second is not first:
            second.close()


def test_concurrent_writers_of_one_address_exactly_one_wins(make_store: MakeStore) -> None:
    first = make_store()
    second = replica(first)
    ip = VipAllocator().allocate(HOST_A)
    start = threading.Barrier(2)
    outcome: dict[str, BaseException | None] = {}

    def write(store: Store, name: str) -> None:
        start.wait()
        try:
            store.commit([Put(service(name, ip))])
            outcome[name] = None
        except BaseException as exc:  # checked below
            outcome[name] = exc

    try:
        threads = [
            threading.Thread(target=write, args=(first, "svc-104")),
            threading.Thread(target=write, args=(second, "svc-131")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        refused = [e for e in outcome.values() if e is not None]
        assert len(refused) == 1, f"expected one refusal, got {outcome}"
        assert isinstance(refused[0], AddressTakenError), outcome
        holders = [o.name for o in first.list("Service") if o.body["spec"]["clusterIP"] == ip]
        assert len(holders) == 1
        assert refused[0].holder == ResourceKey("Service", "default", holders[0])
    finally:
        if second is not first:
            second.close()


def test_an_address_is_shared_by_one_hostname_and_freed_by_a_delete(store: Store) -> None:
    ip = "10.96.7.7"
    store.commit([Put(entry("a", "api.example.com", ip))])
    # Two ServiceEntries of one host share its VIP; so does the Service of that host.
    store.commit([Put(entry("b", "api.example.com", ip, namespace="other"))])
    store.commit([Put(entry("c", "svc-1.default.svc.cluster.local", "10.96.7.8"))])
    store.commit([Put(service("svc-1", "10.96.7.8"))])
    with pytest.raises(AddressTakenError) as refused:
        store.commit([Put(service("svc-2", ip))])
    assert refused.value.holder.kind == "ServiceEntry"
    assert refused.value.holder_host == "api.example.com"
    # In one commit too.
    with pytest.raises(AddressTakenError):
        store.commit([Put(service("x", "10.96.9.9")), Put(service("y", "10.96.9.9"))])
    assert store.get(Key("Service", "default", "x")) is None
    # A delete in the same commit frees the address.
    store.commit(
        [
            Delete(Key("ServiceEntry", "default", "a")),
            Delete(Key("ServiceEntry", "other", "b")),
            Put(service("svc-2", ip)),
        ]
    )
    # A user's own ServiceEntry addresses are not checked (Istio allows any).
    user = entry("d", "db.example.com", "10.96.1.1")
    user["spec"]["addresses"] = [ip]
    del user["status"]
    store.commit([Put(user)])


def test_an_update_that_keeps_its_address_passes(store: Store) -> None:
    ip = "10.96.3.3"
    store.commit([Put(service("one", ip))])
    body = service("one", ip)
    body["spec"]["ports"] = [{"port": 81}]
    result = store.commit([Put(body)])
    assert [e.type for e in result.events] == ["MODIFIED"]
