from __future__ import annotations

from datetime import timedelta

import pytest

from pilotfish.identity.ca_grpc import bearer_token, parse_request


def test_bearer_token_from_metadata() -> None:
    assert bearer_token((("authorization", "Bearer abc.def.ghi"),)) == "abc.def.ghi"
    assert bearer_token((("x", "y"), ("Authorization", b"bearer  tok "))) == "tok"
    assert bearer_token((("authorization", "Basic abc"),)) is None
    assert bearer_token((("authorization", "Bearer "),)) is None
    assert bearer_token(None) is None


def test_parse_request() -> None:
    assert parse_request(b'{"csr": "PEM"}') == ("PEM", None)
    assert parse_request(b'{"csr": "PEM", "ttlSeconds": 60}') == ("PEM", timedelta(seconds=60))
    for body, fragment in (
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b"{}", "csr:"),
        (b'{"csr": "x", "ttlSeconds": "1h"}', "ttlSeconds"),
        (b'{"csr": "x", "ttlSeconds": true}', "ttlSeconds"),
        (b" " * 70000, "larger than"),
    ):
        with pytest.raises(ValueError, match=fragment):
            parse_request(body)
