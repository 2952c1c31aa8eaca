"""parse_duration: Istio/Go duration syntax; Duration fields of the models."""

from __future__ import annotations

import pydantic
import pytest

from pilotfish.api import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("0.5s", 0.5),
        ("100ms", 0.1),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("250us", 0.00025),
        ("0", 0.0),
        ("0s", 0.0),
        (".5s", 0.5),
    ],
)
def test_valid(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10", "", "s", "-1s", "1d", "ten seconds", "1s2", "1.2.3s"])
def test_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_model_durations_keep_the_text_and_carry_the_parsed_value() -> None:
    from pilotfish.api.destinationrule import TrafficPolicy
    from pilotfish.api.duration import Duration
    from pilotfish.api.virtualservice import HTTPRoute

    route = HTTPRoute.model_validate({"timeout": "1.5s", "retries": {"perTryTimeout": "100ms"}})
    assert isinstance(route.timeout, Duration)
    assert route.timeout == "1.5s" and route.timeout.seconds == 1.5
    assert route.retries is not None and route.retries.perTryTimeout is not None
    assert route.retries.perTryTimeout.seconds == 0.1
    assert route.to_dict() == {"timeout": "1.5s", "retries": {"perTryTimeout": "100ms"}}
    tp = TrafficPolicy.model_validate({"connectionPool": {"tcp": {"connectTimeout": "1h30m"}}})
    assert tp.connectionPool is not None and tp.connectionPool.tcp is not None
    assert tp.connectionPool.tcp.connectTimeout is not None
    assert tp.connectionPool.tcp.connectTimeout.seconds == 5400.0


def test_model_durations_check_only_the_type_and_leave_the_syntax_to_validation() -> None:
    from pilotfish.api.virtualservice import HTTPRoute

    with pytest.raises(pydantic.ValidationError, match="valid string"):
        HTTPRoute.model_validate({"timeout": 5})
    bad = HTTPRoute.model_validate({"timeout": "soon"}).timeout
    assert bad is not None and bad == "soon"
    with pytest.raises(ValueError, match="invalid duration"):
        _ = bad.seconds
