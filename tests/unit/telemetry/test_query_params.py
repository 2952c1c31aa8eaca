"""Parsing Jaeger's /api/traces parameters."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from pilotfish.telemetry.query import QueryError, parse_tags, parse_trace_query

NOW = 1_700_000_000_000_000


def test_defaults() -> None:
    query = parse_trace_query(MultiDict(service="a"), NOW)
    assert (query.start_us, query.end_us, query.limit) == (NOW - 3_600_000_000, NOW, 100)
    assert query.operation is None and query.tags == {}


def test_every_parameter() -> None:
    query = parse_trace_query(
        MultiDict(
            service="a.b",
            operation="GET /",
            tags='{"http.status_code":"500","error":true}',
            start="10",
            end="20",
            minDuration="1.2s",
            maxDuration="2s",
            limit="7",
        ),
        NOW,
    )
    assert query.service == "a.b" and query.operation == "GET /"
    assert query.tags == {"http.status_code": "500", "error": "true"}
    assert (query.start_us, query.end_us, query.limit) == (10, 20, 7)
    assert (query.min_duration_us, query.max_duration_us) == (1_200_000, 2_000_000)


def test_lookback() -> None:
    assert parse_trace_query(MultiDict(service="a", lookback="2d"), NOW).start_us == (
        NOW - 2 * 86_400_000_000
    )
    assert parse_trace_query(MultiDict(service="a", lookback="15m"), NOW).start_us == (
        NOW - 900_000_000
    )


def test_tag_parameter_form() -> None:
    assert parse_tags(MultiDict([("tag", "a:b"), ("tag", "c:d:e")])) == {"a": "b", "c": "d:e"}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"service": "a", "minDuration": "fast"},
        {"service": "a", "minDuration": "2s", "maxDuration": "1s"},
        {"service": "a", "limit": "many"},
        {"service": "a", "tags": "not json"},
        {"service": "a", "tags": "[1]"},
        {"service": "a", "tag": "novalue"},
    ],
)
def test_bad_parameters(params: dict[str, str]) -> None:
    with pytest.raises(QueryError) as info:
        parse_trace_query(MultiDict(params), NOW)
    assert info.value.status == 400
