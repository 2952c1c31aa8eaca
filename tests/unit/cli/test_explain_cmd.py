"""`x explain` rendering and header parsing (pure)."""

from __future__ import annotations

import click
import pytest

from pilotfish.cli.explain_cmd import parse_header, render


def test_headers_are_read_as_curl_writes_them() -> None:
    assert parse_header("End-User: jason") == ("end-user", "jason")
    assert parse_header("x-a:b:c") == ("x-a", "b:c")
    with pytest.raises(click.BadParameter):
        parse_header("no-colon")


RESULT = {
    "request": {"method": "GET", "url": "http://reviews:9080/", "headers": {"end-user": "jason"}},
    "from": "default/productpage",
    "client": [
        {"stage": "listener", "name": "127.0.0.1_15001", "address": "127.0.0.1:15001"},
        {"stage": "route", "name": "#0", "clusters": {"outbound|9080|v2|reviews": 100}},
    ],
    "destinations": [{"cluster": "outbound|9080|v2|reviews", "subset": "v2", "weight": 100}],
    "servers": [
        {
            "endpoint": "127.0.0.5:20001",
            "proxy": "default/reviews-v2",
            "steps": [{"stage": "authorization", "name": "DENY", "matched": "x"}],
            "allowed": False,
            "status": 403,
            "reason": "RBAC: access denied",
            "policy": "default/deny-admin",
            "rule": 1,
        }
    ],
    "verdict": {
        "allowed": False,
        "status": 403,
        "reason": "RBAC: access denied",
        "policy": "default/deny-admin",
        "rule": 1,
        "subsets": ["v2"],
    },
}


def test_render_follows_the_request_and_names_the_policy() -> None:
    lines = render(RESULT)
    assert lines[0] == "GET http://reviews:9080/ from default/productpage"
    assert lines[1] == "  end-user: jason"
    assert "  route: #0  (clusters: outbound|9080|v2|reviews=100)" in lines
    assert "Server proxy default/reviews-v2 at 127.0.0.5:20001:" in lines
    assert lines[-1] == (
        "Verdict: DENIED 403: RBAC: access denied by default/deny-admin (rule 1); subsets: v2"
    )
