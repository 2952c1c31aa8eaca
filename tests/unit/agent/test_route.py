"""Waiting for a route to the control plane (``pilotfish.agent.route``)."""

from __future__ import annotations

import pytest

from pilotfish.agent import route
from pilotfish.agent.settings import HostPort


def test_routable() -> None:
    assert route.routable(HostPort("127.0.0.1", 15012))
    assert route.routable(HostPort("istiod.istio-system.svc", 15012))  # a name: not checked


async def test_waits_until_a_route_exists(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([False, False, True])
    monkeypatch.setattr(route, "routable", lambda address: next(answers))
    assert await route.wait_for_route([HostPort("10.1.2.1", 15012)], poll_s=0)
    assert next(answers, None) is None  # asked until the route was there, not once more


async def test_gives_up_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(route, "routable", lambda address: False)
    assert not await route.wait_for_route([HostPort("10.1.2.1", 15012)], timeout_s=0.01)
