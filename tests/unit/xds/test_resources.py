"""ResourceCache: a layered map (a view's map plus a proxy's own resources) gives the same
shared map as the plain map it equals; what the cache keeps of the generator's messages it
keeps for one push."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from pilotfish.api.layered import Layered
from pilotfish.xds import resources
from pilotfish.xds.resources import ResourceCache, build_snapshot
from tests.unit.xds import builders as b


def view(n: int) -> dict[str, object]:
    return {f"c{i}": b.eds_cluster(f"c{i}") for i in range(n)}


def test_a_layered_map_is_the_shared_map_of_what_it_holds() -> None:
    cache = ResourceCache()
    base = view(5)
    own = b.eds_cluster("inbound")
    replaced = b.eds_cluster("c1", service_name="other")
    layered = []
    for _ in range(3):  # three proxies of the view, each with the same own resources
        m = Layered(base)
        m["inbound"] = own
        m["c1"] = replaced
        del m["c2"]
        m["c3"] = base["c3"]  # written back unchanged
        layered.append(cache.whole(b.CLUSTER_TYPE, m))
    plain = dict(base, inbound=own, c1=replaced)
    del plain["c2"]
    expected = cache.whole(b.CLUSTER_TYPE, plain)
    assert layered[0] is layered[1] is layered[2] is expected
    assert {n: e.hash for n, e in expected.items()} == {
        n: e.hash for n, e in ResourceCache().whole(b.CLUSTER_TYPE, plain).items()
    }
    # A proxy with other own resources gets its own map; the base is untouched.
    other = Layered(base)
    other["inbound"] = b.eds_cluster("inbound", service_name="x")
    got = cache.whole(b.CLUSTER_TYPE, other)
    assert got is not expected and set(got) == {*base, "inbound"}
    assert got["inbound"].eds_service == "x" and got["c2"] is cache.intern(
        b.CLUSTER_TYPE, "c2", base["c2"]
    )


def test_a_layered_map_of_another_base_is_not_taken_for_it() -> None:
    cache = ResourceCache()
    first = cache.whole(b.CLUSTER_TYPE, Layered(view(3)))
    second_base = view(3)
    second_base["c0"] = b.eds_cluster("c0", service_name="changed")
    second = cache.whole(b.CLUSTER_TYPE, Layered(second_base))
    assert first["c0"].eds_service == "c0" and second["c0"].eds_service == "changed"


def test_build_snapshot_takes_layered_maps() -> None:
    base = view(4)
    resources = b.resources(clusters={"x": [("127.0.0.1", 1)]})
    layered = {**resources, b.CLUSTER_TYPE: Layered(base)}
    layered[b.CLUSTER_TYPE]["x"] = resources[b.CLUSTER_TYPE]["x"]
    plain = {**resources, b.CLUSTER_TYPE: {**base, "x": resources[b.CLUSTER_TYPE]["x"]}}
    cache = ResourceCache()
    got, want = build_snapshot(layered, cache), build_snapshot(plain, cache)
    assert got.entries == want.entries and got.eds_of_cluster == want.eds_of_cluster
    assert got.get(b.CLUSTER_TYPE) is want.get(b.CLUSTER_TYPE)


def test_a_message_no_generation_used_since_the_push_before_is_let_go() -> None:
    cache = ResourceCache()
    route = b.route_config("r", "a")
    alone = sys.getrefcount(route)
    snapshot = build_snapshot({b.ROUTE_TYPE: {"r": route}}, cache)
    entry = weakref.ref(snapshot.get(b.ROUTE_TYPE)["r"])
    del snapshot  # the proxies moved on to another route configuration
    gc.collect()
    # Kept for the proxies still to be generated from the same message...
    assert entry() is not None and sys.getrefcount(route) > alone
    cache.next_push()
    assert entry() is not None
    # ...until a whole push went by without it.
    cache.next_push()
    gc.collect()
    assert entry() is None and cache.size == 0
    assert sys.getrefcount(route) == alone


def test_a_message_used_in_every_push_is_serialized_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str] = []

    class Counted(resources.Entry):
        __slots__ = ()

        def __init__(self, type_url: str, name: str, payload: bytes, eds: str | None = None):
            made.append(name)
            super().__init__(type_url, name, payload, eds)

    monkeypatch.setattr(resources, "Entry", Counted)
    cache = ResourceCache()
    route = b.route_config("r", "a")
    for _ in range(5):
        cache.next_push()
        # The proxies of this push let go of what they had: only the memo holds the entry.
        build_snapshot({b.ROUTE_TYPE: {"r": route}}, cache)
        gc.collect()
    assert made == ["r"]


def test_a_base_no_generation_used_since_the_push_before_is_let_go() -> None:
    class Base(dict[str, object]):
        """A view's map (a dict subclass: weakly referable)."""

    cache = ResourceCache()
    base: Base | None = Base(view(3))
    gone = weakref.ref(base)
    kept = Base(view(2))
    for _ in range(3):
        cache.whole(b.CLUSTER_TYPE, Layered(kept))
        if base is not None:
            cache.whole(b.CLUSTER_TYPE, Layered(base))
            base = None  # the push context that made it was replaced
        cache.next_push()
    gc.collect()
    assert gone() is None
    assert cache.whole(b.CLUSTER_TYPE, Layered(kept)) is cache.whole(b.CLUSTER_TYPE, dict(kept))
