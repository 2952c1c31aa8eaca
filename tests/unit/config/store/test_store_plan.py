"""The pure commit rules in plan.py, without a backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pilotfish.config.store import Key, Put
from pilotfish.config.store.plan import check_since, plan_commit, plural, rfc3339
from pilotfish.errors import CompactedError

from .helpers import vs


def test_rfc3339_is_utc_seconds() -> None:
    moment = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(moment) == "2024-05-01T12:00:00Z"


def test_plural() -> None:
    assert plural("VirtualService") == "virtualservices"
    assert plural("AuthorizationPolicy") == "authorizationpolicies"
    assert plural("Widget") == "widgets"


def test_check_since() -> None:
    check_since(5, 10, 5)
    check_since(10, 10, 0)
    with pytest.raises(CompactedError):
        check_since(4, 10, 5)
    with pytest.raises(CompactedError):
        check_since(11, 10, 0)
    with pytest.raises(ValueError):
        check_since(-1, 10, 0)


def test_plan_starts_after_the_given_revision_and_uses_injected_ids() -> None:
    events = plan_commit(
        [Put(vs("a")), Put(vs("b"))],
        lambda key: None,
        41,
        clock=lambda: datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        new_uid=iter(["u1", "u2"]).__next__,
    )
    assert [(e.revision, e.object.body["metadata"]["uid"]) for e in events] == [
        (42, "u1"),
        (43, "u2"),
    ]
    assert events[0].object.body["metadata"]["creationTimestamp"] == "2024-01-02T03:04:05Z"
    assert events[0].object.key == Key("VirtualService", "default", "a")


def test_plan_does_not_touch_the_callers_body() -> None:
    body = vs("a")
    plan_commit([Put(body)], lambda key: None, 0)
    assert body == vs("a")
