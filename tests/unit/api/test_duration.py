"""parse_duration: Istio/Go duration syntax."""

from __future__ import annotations

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
