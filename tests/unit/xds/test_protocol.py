"""ShouldRespond decisions: initial, ACK, NACK, stale nonce, subscription change (SotW, Delta)."""

from __future__ import annotations

import pytest

from pilotfish.xds.protocol import (
    Have,
    Kind,
    TypeState,
    classify_delta,
    classify_sotw,
    resumes_listeners,
)
from pilotfish.xds.resources import ResourceCache, build_snapshot
from tests.unit.xds import builders as b
from tests.unit.xds.fake import delta, sotw


def sent(state: TypeState, seq: int, version: str = "", names: tuple[str, ...] = ()) -> str:
    nonce = f"n{seq}"
    state.record_sent(nonce, seq, version or f"v{seq}", 0.0, names)
    return nonce


def test_sotw_first_request_is_answered() -> None:
    state = TypeState(b.CLUSTER_TYPE)
    verdict = classify_sotw(state, sotw(b.CLUSTER_TYPE), 1.0)
    assert verdict.kind is Kind.INITIAL and verdict.respond
    assert state.wildcard and state.requested


def test_sotw_ack_records_version_once() -> None:
    state = TypeState(b.ENDPOINT_TYPE)
    classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"]), 1.0)
    nonce = sent(state, 1)
    first = classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"], nonce=nonce, version="v1"), 2.0)
    assert first.kind is Kind.ACK and not first.respond and first.answered_seq == 1
    assert (state.acked_version, state.acked_nonce, state.acked_at) == ("v1", nonce, 2.0)
    again = classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"], nonce=nonce, version="v1"), 3.0)
    assert again.kind is Kind.ACK and not again.respond and again.answered_seq == 0
    assert state.acked_at == 2.0


def test_sotw_nack_is_recorded_and_not_answered() -> None:
    state = TypeState(b.ROUTE_TYPE)
    classify_sotw(state, sotw(b.ROUTE_TYPE, ["r"]), 1.0)
    good = sent(state, 1, names=("r",))
    classify_sotw(state, sotw(b.ROUTE_TYPE, ["r"], nonce=good, version="v1"), 1.0)
    bad = sent(state, 2, names=("r",))
    verdict = classify_sotw(
        state, sotw(b.ROUTE_TYPE, ["r"], nonce=bad, version="v1", error="no clusters"), 5.0
    )
    assert verdict.kind is Kind.NACK and not verdict.respond
    assert state.last_nack is not None
    assert (state.last_nack.version, state.last_nack.error) == ("v1", "no clusters")
    assert state.acked_version == "v1"
    assert state.rejected == {"r"}
    assert state.status().state == "NACKED"


def test_sotw_stale_nonce_is_ignored() -> None:
    state = TypeState(b.ENDPOINT_TYPE)
    classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"]), 1.0)
    old = sent(state, 1)
    sent(state, 2)
    verdict = classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a", "b"], nonce=old), 1.0)
    assert verdict.kind is Kind.STALE and not verdict.respond
    assert state.names == {"a"}
    assert state.acked_nonce == ""


def test_sotw_latest_nonce_with_new_names_is_a_subscription_change() -> None:
    state = TypeState(b.ENDPOINT_TYPE)
    classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"]), 1.0)
    nonce = sent(state, 1)
    classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"], nonce=nonce, version="v1"), 1.0)
    verdict = classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a", "b"], nonce=nonce), 1.0)
    assert verdict.kind is Kind.SUBSCRIBE and verdict.respond
    assert verdict.added == {"b"}
    assert verdict.answered_seq == 0  # not a second ACK
    assert state.names == {"a", "b"}


def test_sotw_dropping_names_needs_no_response_and_forgets_them() -> None:
    state = TypeState(b.ENDPOINT_TYPE)
    classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a", "b"]), 1.0)
    state.have = {"a": "h1", "b": "h2"}
    nonce = sent(state, 1)
    verdict = classify_sotw(state, sotw(b.ENDPOINT_TYPE, ["a"], nonce=nonce), 1.0)
    assert verdict.kind is Kind.SUBSCRIBE and not verdict.respond
    assert state.have == {"a": "h1"}


def test_delta_initial_wildcard_and_reconnect_versions() -> None:
    state = TypeState(b.CLUSTER_TYPE)
    verdict = classify_delta(state, delta(b.CLUSTER_TYPE, initial={"a": "h1"}), 1.0)
    assert verdict.kind is Kind.INITIAL and verdict.respond
    assert state.wildcard and state.have == {"a": "h1"}


def test_only_a_first_listener_request_declaring_listeners_resumes_them() -> None:
    # Reconnecting (after a control-plane restart), Envoy declares the listeners it runs.
    assert resumes_listeners(delta(b.LISTENER_TYPE, initial={"http": "h1"}))
    assert resumes_listeners(sotw(b.LISTENER_TYPE, version="v7"))
    # A new proxy has none yet; holding clusters says nothing about listeners.
    assert not resumes_listeners(delta(b.LISTENER_TYPE))
    assert not resumes_listeners(sotw(b.LISTENER_TYPE))
    assert not resumes_listeners(delta(b.CLUSTER_TYPE, initial={"a": "h1"}))
    assert not resumes_listeners(sotw(b.CLUSTER_TYPE, version="v7"))
    # An ACK on a stream is not a resumption.
    assert not resumes_listeners(sotw(b.LISTENER_TYPE, version="v7", nonce="1-3"))


def test_delta_ack_nack_and_stale() -> None:
    state = TypeState(b.ROUTE_TYPE)
    classify_delta(state, delta(b.ROUTE_TYPE, ["r"]), 1.0)
    n1 = sent(state, 1, names=("r",))
    ack = classify_delta(state, delta(b.ROUTE_TYPE, nonce=n1), 2.0)
    assert ack.kind is Kind.ACK and ack.answered_seq == 1 and state.acked_version == "v1"
    n2 = sent(state, 2, names=("r",))
    n3 = sent(state, 3, names=("s",))
    # An ACK of an older response is stale, but a NACK of it counts: each response stands alone.
    assert classify_delta(state, delta(b.ROUTE_TYPE, nonce=n2), 3.0).kind is Kind.STALE
    nack = classify_delta(state, delta(b.ROUTE_TYPE, nonce=n2, error="bad"), 3.0)
    assert nack.kind is Kind.NACK and state.last_nack is not None
    assert state.last_nack.version == "v1" and state.rejected == {"r"}
    classify_delta(state, delta(b.ROUTE_TYPE, nonce=n3), 4.0)
    assert state.acked_nonce == n3 and state.rejected == {"r"}
    assert classify_delta(state, delta(b.ROUTE_TYPE, nonce="unknown"), 5.0).kind is Kind.STALE


def test_delta_subscribe_and_unsubscribe() -> None:
    state = TypeState(b.ENDPOINT_TYPE)
    classify_delta(state, delta(b.ENDPOINT_TYPE, ["a"]), 1.0)
    state.have = {"a": "h"}
    verdict = classify_delta(state, delta(b.ENDPOINT_TYPE, ["b"], ["a"]), 1.0)
    assert verdict.kind is Kind.SUBSCRIBE and verdict.respond and verdict.added == {"b"}
    assert state.names == {"b"} and state.have == {}
    nothing_new = classify_delta(state, delta(b.ENDPOINT_TYPE, [], ["b"]), 1.0)
    assert not nothing_new.respond


def test_delta_subscription_changes_are_shared_by_proxies_that_make_the_same_change() -> None:
    states = [TypeState(b.ENDPOINT_TYPE) for _ in range(2)]
    for state in states:
        classify_delta(state, delta(b.ENDPOINT_TYPE, ["a", "b"]), 1.0)
    assert states[0].names is states[1].names
    verdicts = [classify_delta(s, delta(b.ENDPOINT_TYPE, ["c", "a"]), 1.0) for s in states]
    assert [v.added for v in verdicts] == [{"c"}, {"c"}]
    assert states[0].names == {"a", "b", "c"} and states[0].names is states[1].names
    # A name both subscribed and unsubscribed in one request ends unsubscribed.
    verdict = classify_delta(states[0], delta(b.ENDPOINT_TYPE, ["d", "a"], ["d", "a"]), 1.0)
    assert states[0].names == {"b", "c"} and verdict.added == frozenset()
    assert states[1].names == {"a", "b", "c"}


def test_have_over_a_shared_map_behaves_as_a_dict() -> None:
    snap = build_snapshot(
        b.resources(clusters={"a": [("127.0.0.1", 1)], "b": [("127.0.0.1", 2)]}), ResourceCache()
    )
    base = snap.get(b.CLUSTER_TYPE)
    have = Have(base)
    plain = {n: e.hash for n, e in base.items()}
    assert dict(have) == plain and len(have) == 2
    for h in (have, plain):
        h["c"] = "h3"
        h["a"] = "h1"
        del h["b"]
        h.pop("missing", None)
    assert dict(have) == plain == {"a": "h1", "c": "h3"}
    assert have.pick(["a", "b", "c", "x"]) == plain
    assert len(have) == 2 and "b" not in have and have.get("b") is None
    have["b"] = "again"
    assert have["b"] == "again" and len(have) == 3
    assert sorted(have.keys() - {"a"}) == ["b", "c"]
    assert dict(base) == dict(snap.get(b.CLUSTER_TYPE))  # the shared map is never changed
    del have["b"]
    entries = build_snapshot(
        b.resources(clusters={"b": [("127.0.0.1", 5)], "c": [("127.0.0.1", 6)]}), ResourceCache()
    ).get(b.CLUSTER_TYPE)
    have.record(entries.values())  # b again (it was removed), c again
    plain.update((e.name, e.hash) for e in entries.values())
    assert dict(have) == plain and len(have) == len(plain) == 3


def test_have_with_extra_names_and_the_names_it_holds_outside_a_set() -> None:
    snap = build_snapshot(
        b.resources(clusters={"a": [("127.0.0.1", 1)], "b": [("127.0.0.1", 2)]}), ResourceCache()
    )
    base = snap.get(b.CLUSTER_TYPE)
    have = Have(base, {"gone": "h0"})
    plain = {**{n: e.hash for n, e in base.items()}, "gone": "h0"}
    assert dict(have) == plain and len(have) == 3
    for h in (have, plain):
        h["c"] = "h3"
        h["a"] = "h1"
        del h["b"]
    assert dict(have) == plain
    for keep in (frozenset(), frozenset({"a"}), frozenset({"b", "c"}), frozenset({"gone", "a"})):
        assert sorted(have.names_not_in(keep)) == sorted(plain.keys() - keep)


@pytest.mark.parametrize("shared", [False, True], ids=["declared", "shared"])
def test_unsubscribing_forgets_what_was_held_under_those_names(shared: bool) -> None:
    snap = build_snapshot(
        b.resources(clusters={"a": [("127.0.0.1", 1)], "b": [("127.0.0.1", 2)]}), ResourceCache()
    )
    state = TypeState(b.ENDPOINT_TYPE)
    declared = {"a": "x", "b": "y", "old": "z"}
    classify_delta(state, delta(b.ENDPOINT_TYPE, ["a", "b"], initial=declared), 1.0)
    # What was declared and not subscribed to is not held any more.
    assert dict(state.have) == {"a": "x", "b": "y"}
    if shared:
        state.have = Have(snap.get(b.ENDPOINT_TYPE))
    held = dict(state.have)
    classify_delta(state, delta(b.ENDPOINT_TYPE, [], ["b"]), 2.0)
    assert dict(state.have) == {"a": held["a"]} and state.names == {"a"}


def test_covered_is_covers_for_every_name() -> None:
    names = {"a", "b", "c", "d"}
    for wildcard, subscribed, on_demand, have in (
        (False, {"a", "x"}, set(), {}),
        (True, set(), set(), {}),
        (True, {"b"}, {"b", "c", "d"}, {"d": "h"}),
    ):
        state = TypeState(b.CLUSTER_TYPE, wildcard=wildcard, names=frozenset(subscribed))
        state.on_demand, state.have = frozenset(on_demand), dict(have)
        assert state.covered(names) == {n for n in names if state.covers(n)}
