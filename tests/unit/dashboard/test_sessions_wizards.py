"""Dashboard sign-in (token, one-time links, expiry) and the wizards' resources."""

from __future__ import annotations

import pytest
import yaml

from pilotfish.config.validation import validate
from pilotfish.dashboard import wizards
from pilotfish.dashboard.sessions import LOGIN_CODE_TTL, SESSION_TTL, Sessions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_admin_token_opens_a_session_and_nothing_else_does() -> None:
    s = Sessions(frozenset({"secret"}))
    assert s.login_with_token("wrong") is None
    assert s.login_with_token("") is None
    session = s.login_with_token("secret")
    assert session and s.valid(session)
    assert not s.valid("made-up") and not s.valid(None)
    s.logout(session)
    assert not s.valid(session)


def test_a_login_link_works_once_and_expires() -> None:
    clock = Clock()
    s = Sessions(frozenset({"secret"}), clock=clock)
    code = s.issue_login_code()
    session = s.login_with_code(code)
    assert session and s.valid(session)
    assert s.login_with_code(code) is None  # used up
    late = s.issue_login_code()
    clock.now += LOGIN_CODE_TTL + 1
    assert s.login_with_code(late) is None
    clock.now += SESSION_TTL
    assert not s.valid(session)


def test_traffic_shifting_writes_a_valid_virtual_service() -> None:
    (vs,) = wizards.build(
        "traffic-shifting", "reviews", "default", {"weights": {"v1": 90, "v2": 10}},
        subsets_defined=["v1", "v2", "v3"],
    )  # fmt: skip
    validate(vs)
    route = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in route] == [("v1", 90), ("v2", 10)]
    assert vs["metadata"] == {"name": "reviews", "namespace": "default",
                              "labels": {"pilotfish.io/created-by": "dashboard"}}  # fmt: skip


def test_traffic_shifting_adds_the_destination_rule_when_subsets_are_missing() -> None:
    dr, vs = wizards.build(
        "traffic-shifting", "reviews", "default", {"weights": {"v1": 50, "v2": 50}},
        versions={"v1": {"version": "v1"}, "v2": {"version": "v2"}},
    )  # fmt: skip
    validate(dr)
    validate(vs)
    assert dr["kind"] == "DestinationRule"
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["v1", "v2"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"v1": 90, "v2": 20}, "add up to 100"),
        ({"v1": "x"}, "weights.v1: must be an integer"),
        ({}, "at least one subset"),
        ({"v9": 100}, "no DestinationRule defines subset v9"),
    ],
)
def test_traffic_shifting_refuses_bad_weights(weights: dict[str, object], message: str) -> None:
    with pytest.raises(wizards.WizardError, match=message):
        wizards.build("traffic-shifting", "reviews", "default", {"weights": weights},
                      subsets_defined=["v1", "v2"])  # fmt: skip


def test_fault_injection_and_timeouts_write_valid_resources() -> None:
    (fault,) = wizards.build("fault-injection", "ratings", "default",
                             {"abortPercent": 100, "abortStatus": 500})  # fmt: skip
    validate(fault)
    abort = fault["spec"]["http"][0]["fault"]["abort"]
    assert abort == {"httpStatus": 500, "percentage": {"value": 100.0}}
    (timeouts,) = wizards.build("request-timeouts", "ratings", "default",
                                {"timeoutSeconds": 2, "attempts": 3, "perTryTimeoutSeconds": 0.5,
                                 "retryOn": "5xx"})  # fmt: skip
    validate(timeouts)
    http = timeouts["spec"]["http"][0]
    assert http["timeout"] == "2s"
    assert http["retries"] == {"attempts": 3, "perTryTimeout": "0.5s", "retryOn": "5xx"}
    assert yaml.safe_load(wizards.to_yaml([timeouts]))["spec"] == timeouts["spec"]
    with pytest.raises(wizards.WizardError, match="abortPercent: must be between 0 and 100"):
        wizards.build("fault-injection", "ratings", "default", {"abortPercent": 120})
    with pytest.raises(wizards.WizardError, match="wizard: must be one of"):
        wizards.build("nope", "ratings", "default", {})
