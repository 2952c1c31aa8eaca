"""The store contract (base.py) checked on every backend."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from pilotfish.config.store import Delete, Key, Put, Store, key_of
from pilotfish.errors import (
    AlreadyExistsError,
    CompactedError,
    ConflictError,
    NotFoundError,
    StoreError,
)

from .conftest import MakeStore
from .helpers import vs

REVIEWS = Key("VirtualService", "default", "reviews")


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def secret(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "istio-system"},
        "data": {"key": value},
    }


# -- revisions and server-filled metadata ---------------------------------------------------


def test_empty_store(store: Store) -> None:
    assert store.revision() == 0
    assert store.list() == []
    assert store.events_since(0) == []
    assert store.get(REVIEWS) is None


def test_each_write_gets_the_next_revision(store: Store) -> None:
    first = store.commit([Put(vs("a")), Put(vs("b")), Put(namespace("prod"))])
    assert first.revision == 3
    assert [e.revision for e in first.events] == [1, 2, 3]
    assert [e.type for e in first.events] == ["ADDED", "ADDED", "ADDED"]
    second = store.commit([Delete(Key("VirtualService", "default", "a"))])
    assert second.revision == 4
    assert store.revision() == 4
    assert [e.revision for e in store.events_since(0)] == [1, 2, 3, 4]


def test_create_fills_server_metadata(store: Store) -> None:
    result = store.commit([Put(vs("reviews"))])
    stored = store.get(REVIEWS)
    assert stored is not None
    meta = stored.body["metadata"]
    assert stored.revision == 1
    assert meta["resourceVersion"] == "1"
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert uuid.UUID(meta["uid"]).version == 4
    assert result.events[0].object.body == stored.body


def test_caller_values_for_server_fields_are_replaced(store: Store) -> None:
    body = vs("reviews")
    body["metadata"].update(
        resourceVersion="99", uid="mine", generation=7, creationTimestamp="2000-01-01T00:00:00Z"
    )
    store.commit([Put(body)])
    stored = store.get(REVIEWS)
    assert stored is not None
    meta = stored.body["metadata"]
    assert (meta["resourceVersion"], meta["generation"]) == ("1", 1)
    assert meta["uid"] != "mine"
    assert meta["creationTimestamp"] == "2024-05-01T12:00:00Z"


def test_update_keeps_uid_and_creation_and_bumps_generation_on_spec_change(
    make_store: MakeStore,
) -> None:
    times = iter(["2024-05-01T12:00:00", "2024-06-01T00:00:00", "2024-07-01T00:00:00"])
    store = make_store(clock=lambda: datetime.fromisoformat(next(times)).replace(tzinfo=UTC))
    store.commit([Put(vs("reviews"))])
    created = store.get(REVIEWS)
    assert created is not None

    store.commit([Put(vs("reviews", hosts=["reviews", "reviews.default"]))])
    updated = store.get(REVIEWS)
    assert updated is not None
    assert updated.body["metadata"]["uid"] == created.body["metadata"]["uid"]
    assert updated.body["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert updated.body["metadata"]["generation"] == 2
    assert updated.body["metadata"]["resourceVersion"] == "2"

    labelled = vs("reviews", hosts=["reviews", "reviews.default"])
    labelled["metadata"]["labels"] = {"team": "books"}
    result = store.commit([Put(labelled)])
    assert result.events[0].type == "MODIFIED"
    relabelled = store.get(REVIEWS)
    assert relabelled is not None
    assert relabelled.body["metadata"]["generation"] == 2  # metadata only: same generation
    assert relabelled.body["metadata"]["resourceVersion"] == "3"


def test_generation_follows_data_for_secrets(store: Store) -> None:
    store.commit([Put(secret("cert", "a"))])
    store.commit([Put(secret("cert", "b"))])
    stored = store.get(Key("Secret", "istio-system", "cert"))
    assert stored is not None
    assert stored.body["metadata"]["generation"] == 2


def test_identical_put_is_a_no_op(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    stored = store.get(REVIEWS)
    assert stored is not None
    calls: list[int] = []
    store.subscribe(calls.append)
    # The stored body itself (with server fields) and the plain body are both "identical".
    for body in (vs("reviews"), stored.body):
        result = store.commit([Put(body)])
        assert result.revision == 1
        assert result.events == []
    assert store.revision() == 1
    assert store.events_since(0)[-1].revision == 1
    assert calls == []


def test_no_op_puts_take_no_revision_inside_a_commit(store: Store) -> None:
    store.commit([Put(vs("a"))])
    result = store.commit([Put(vs("a")), Put(vs("b"))])
    assert [(e.object.name, e.revision) for e in result.events] == [("b", 2)]


def test_cluster_scoped_objects_have_empty_namespace(store: Store) -> None:
    store.commit([Put(namespace("prod", **{"istio-injection": "enabled"}))])
    stored = store.get(Key("Namespace", "", "prod"))
    assert stored is not None
    assert stored.namespace == ""
    assert key_of(stored.body) == stored.key


# -- preconditions ---------------------------------------------------------------------------


def test_expected_revision_matches(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    result = store.commit([Put(vs("reviews", hosts=["x"]), expected_revision=1)])
    assert result.revision == 2


def test_expected_revision_conflict_uses_kubectl_words(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    store.commit([Put(vs("reviews", hosts=["x"]))])
    with pytest.raises(ConflictError) as err:
        store.commit([Put(vs("reviews", hosts=["y"]), expected_revision=1)])
    assert str(err.value) == (
        'Operation cannot be fulfilled on virtualservices "reviews": the object has been '
        "modified; please apply your changes to the latest version and try again"
    )
    assert store.revision() == 2


def test_stale_expected_revision_conflicts_even_for_identical_body(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    store.commit([Put(vs("reviews", hosts=["x"]))])
    with pytest.raises(ConflictError):
        store.commit([Put(vs("reviews", hosts=["x"]), expected_revision=1)])


def test_expected_revision_on_missing_object_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match='virtualservices "reviews" not found'):
        store.commit([Put(vs("reviews"), expected_revision=3)])


def test_create_only(store: Store) -> None:
    store.commit([Put(vs("reviews"), create_only=True)])
    with pytest.raises(AlreadyExistsError) as err:
        store.commit([Put(vs("reviews", hosts=["x"]), create_only=True)])
    assert str(err.value) == 'virtualservices "reviews" already exists'


def test_delete(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    result = store.commit([Delete(REVIEWS)])
    (event,) = result.events
    assert event.type == "DELETED"
    assert event.revision == 2
    assert event.object.revision == 2
    assert event.object.body["spec"] == {"hosts": ["reviews"]}
    assert event.object.body["metadata"]["resourceVersion"] == "2"
    assert store.get(REVIEWS) is None


def test_delete_missing_object(store: Store) -> None:
    with pytest.raises(NotFoundError) as err:
        store.commit([Delete(REVIEWS)])
    assert str(err.value) == 'virtualservices "reviews" not found'
    assert store.revision() == 0


def test_delete_with_expected_revision(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    with pytest.raises(ConflictError):
        store.commit([Delete(REVIEWS, expected_revision=5)])
    assert store.get(REVIEWS) is not None
    store.commit([Delete(REVIEWS, expected_revision=1)])
    assert store.get(REVIEWS) is None


def test_failed_commit_applies_nothing(store: Store) -> None:
    store.commit([Put(vs("reviews"))])
    calls: list[int] = []
    store.subscribe(calls.append)
    with pytest.raises(NotFoundError, match='"ratings" not found'):
        store.commit(
            [
                Put(vs("a")),
                Put(vs("reviews", hosts=["changed"])),
                Delete(Key("VirtualService", "default", "ratings")),
            ]
        )
    assert store.revision() == 1
    assert [o.name for o in store.list()] == ["reviews"]
    reviews = store.get(REVIEWS)
    assert reviews is not None
    assert reviews.body["spec"] == {"hosts": ["reviews"]}
    assert len(store.events_since(0)) == 1
    assert calls == []
    # The store still works after the failure, and revisions continue without a gap.
    assert store.commit([Put(vs("a"))]).revision == 2


def test_operations_in_one_commit_see_each_other(store: Store) -> None:
    result = store.commit(
        [
            Put(vs("reviews"), create_only=True),
            Put(vs("reviews", hosts=["x"]), expected_revision=1),
            Delete(REVIEWS, expected_revision=2),
            Put(vs("reviews", hosts=["y"]), create_only=True),
        ]
    )
    assert [e.type for e in result.events] == ["ADDED", "MODIFIED", "DELETED", "ADDED"]
    stored = store.get(REVIEWS)
    assert stored is not None
    assert stored.revision == 4
    assert stored.body["spec"] == {"hosts": ["y"]}
    assert stored.body["metadata"]["generation"] == 1


def test_invalid_bodies_are_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=r"metadata\.name"):
        store.commit([Put({"kind": "VirtualService", "metadata": {}})])
    with pytest.raises(StoreError, match="not JSON data"):
        store.commit([Put({**vs("reviews"), "spec": {"x": object()}})])
    assert store.revision() == 0


def test_empty_commit(store: Store) -> None:
    store.commit([Put(vs("a"))])
    result = store.commit([])
    assert (result.revision, result.events) == (1, [])


# -- reading ---------------------------------------------------------------------------------


def test_list_is_sorted_and_filtered(store: Store) -> None:
    store.commit(
        [
            Put(vs("b", "prod")),
            Put(namespace("prod")),
            Put(vs("a", "prod")),
            Put(vs("z", "default")),
            Put(secret("cert", "x")),
        ]
    )
    keys = [(o.kind, o.namespace, o.name) for o in store.list()]
    assert keys == sorted(keys)
    assert len(keys) == 5
    assert [o.name for o in store.list("VirtualService")] == ["z", "a", "b"]
    assert [o.name for o in store.list("VirtualService", "prod")] == ["a", "b"]
    assert [o.kind for o in store.list(None, "prod")] == ["VirtualService", "VirtualService"]
    assert [o.name for o in store.list("Namespace", "")] == ["prod"]
    assert store.list("Gateway") == []


def test_returned_bodies_are_copies(store: Store) -> None:
    body = vs("reviews")
    result = store.commit([Put(body)])
    body["spec"]["hosts"].append("caller-mutation")
    result.events[0].object.body["spec"]["hosts"].append("event-mutation")
    got = store.get(REVIEWS)
    assert got is not None
    got.body["spec"]["hosts"].append("get-mutation")
    store.list()[0].body["spec"]["hosts"].append("list-mutation")
    store.events_since(0)[0].object.body["spec"]["hosts"].append("log-mutation")
    again = store.get(REVIEWS)
    assert again is not None
    assert again.body["spec"]["hosts"] == ["reviews"]
    assert store.events_since(0)[0].object.body["spec"]["hosts"] == ["reviews"]


def test_events_since_middle_and_limit(store: Store) -> None:
    for i in range(6):
        store.commit([Put(vs(f"vs{i}"))])
    assert [e.revision for e in store.events_since(3)] == [4, 5, 6]
    assert [e.revision for e in store.events_since(1, limit=2)] == [2, 3]
    assert store.events_since(6) == []
    assert store.events_since(6, limit=10) == []
    event = store.events_since(3, limit=1)[0]
    assert event.object.body["metadata"]["resourceVersion"] == "4"


def test_events_since_ahead_of_the_store(store: Store) -> None:
    store.commit([Put(vs("a"))])
    with pytest.raises(CompactedError, match="ahead of the store"):
        store.events_since(5)


def test_compaction_keeps_the_last_events(make_store: MakeStore) -> None:
    store = make_store(keep_events=3)
    for i in range(5):
        store.commit([Put(vs(f"vs{i}"))])
    assert [e.revision for e in store.events_since(2)] == [3, 4, 5]
    with pytest.raises(CompactedError, match="too old resource version: 1"):
        store.events_since(1)
    with pytest.raises(CompactedError):
        store.events_since(0)
    # Objects are not affected by compaction, and the revision goes on.
    assert len(store.list()) == 5
    assert store.commit([Put(vs("more"))]).revision == 6
    assert [e.revision for e in store.events_since(3)] == [4, 5, 6]


def test_compaction_after_a_large_commit(make_store: MakeStore) -> None:
    store = make_store(keep_events=4)
    store.commit([Put(vs(f"vs{i}")) for i in range(10)])
    assert [e.revision for e in store.events_since(6)] == [7, 8, 9, 10]
    with pytest.raises(CompactedError):
        store.events_since(5)


# -- subscribers and lifecycle ---------------------------------------------------------------


def test_subscribers_hear_each_commit_and_may_read_the_store(store: Store) -> None:
    seen: list[tuple[int, int]] = []

    def on_commit(revision: int) -> None:
        # Reading (and even writing) from the callback must not deadlock.
        seen.append((revision, len(store.events_since(0))))

    unsubscribe = store.subscribe(on_commit)
    store.commit([Put(vs("a")), Put(vs("b"))])
    store.commit([Delete(Key("VirtualService", "default", "a"))])
    assert seen == [(2, 2), (3, 3)]
    unsubscribe()
    unsubscribe()  # idempotent
    store.commit([Put(vs("c"))])
    assert seen == [(2, 2), (3, 3)]


def test_a_failing_subscriber_does_not_break_commits(store: Store) -> None:
    heard: list[int] = []

    def broken(revision: int) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(heard.append)
    assert store.commit([Put(vs("a"))]).revision == 1
    assert heard == [1]


def test_subscriber_may_commit(store: Store) -> None:
    def mirror(revision: int) -> None:
        if revision == 1:
            store.commit([Put(vs("mirror"))])

    store.subscribe(mirror)
    store.commit([Put(vs("a"))])
    assert [o.name for o in store.list()] == ["a", "mirror"]


def test_closed_store_refuses_calls(make_store: MakeStore) -> None:
    store = make_store()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.revision()
    with pytest.raises(StoreError, match="closed"):
        store.commit([Put(vs("a"))])
