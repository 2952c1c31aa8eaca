from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest

from pilotfish.identity.errors import (
    MalformedTokenError,
    TokenExpiredError,
    TokenSignatureError,
)
from pilotfish.identity.tokens import TOKEN_KEY_FILE, TokenAuthority

from .conftest import T0, ManualTime

KEY = b"k" * 32


def _segments(token: str) -> list[dict]:
    head, body, _ = token.split(".")
    return [json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))) for s in (head, body)]


def _encode(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_valid_token_round_trip(manual_time: ManualTime) -> None:
    authority = TokenAuthority(KEY, now=manual_time)
    token = authority.issue("default", "bookinfo-reviews", timedelta(hours=1))
    claims = authority.verify(token)
    assert (claims.namespace, claims.service_account) == ("default", "bookinfo-reviews")
    assert claims.issued_at == T0 and claims.expires_at == T0 + timedelta(hours=1)
    assert claims.subject == "system:serviceaccount:default:bookinfo-reviews"
    assert str(claims.identity("cluster.local")) == (
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    )
    header, body = _segments(token)
    assert header["alg"] == "HS256" and header["typ"] == "JWT"
    assert body["jti"] == claims.token_id
    other = authority.issue("default", "bookinfo-reviews", timedelta(hours=1))
    assert authority.verify(other).token_id != claims.token_id


def test_expired_token(manual_time: ManualTime) -> None:
    authority = TokenAuthority(KEY, now=manual_time)
    token = authority.issue("default", "sa", timedelta(minutes=10))
    manual_time.t = T0 + timedelta(minutes=9, seconds=59)
    authority.verify(token)
    manual_time.t = T0 + timedelta(minutes=10)
    with pytest.raises(TokenExpiredError) as err:
        authority.verify(token)
    assert "claims.exp" in str(err.value) and "expired at" in str(err.value)
    lenient = TokenAuthority(KEY, now=manual_time, leeway=timedelta(minutes=1))
    assert lenient.verify(token).namespace == "default"


def test_tampered_claims_are_refused(manual_time: ManualTime) -> None:
    authority = TokenAuthority(KEY, now=manual_time)
    token = authority.issue("team-a", "sa", timedelta(hours=1))
    head, _, sig = token.split(".")
    _, body = _segments(token)
    body["ns"] = "team-b"
    forged = f"{head}.{_encode(body)}.{sig}"
    with pytest.raises(TokenSignatureError, match="does not match"):
        authority.verify(forged)


def test_wrong_key_is_refused(manual_time: ManualTime) -> None:
    token = TokenAuthority(b"x" * 32, now=manual_time).issue("ns", "sa", timedelta(hours=1))
    with pytest.raises(TokenSignatureError, match="another key"):
        TokenAuthority(KEY, now=manual_time).verify(token)


@pytest.mark.parametrize(
    "token, fragment",
    [
        ("", "empty"),
        ("a.b", "three base64url segments"),
        ("a.b.c.d", "three base64url segments"),
        ("!!!.e30.e30", "header: is not"),
        (_encode({"alg": "none"}) + ".e30.", "header.alg: must be HS256"),
        ("x" * 9000, "longer than"),
    ],
)
def test_malformed_tokens(token: str, fragment: str, manual_time: ManualTime) -> None:
    with pytest.raises(MalformedTokenError) as err:
        TokenAuthority(KEY, now=manual_time).verify(token)
    assert fragment in str(err.value)
    assert str(err.value).startswith("workload token")


def test_claims_are_checked_even_when_signed(manual_time: ManualTime) -> None:
    """A correctly signed token from another issuer/audience or with bad names is refused."""
    other_audience = TokenAuthority(KEY, audience="other", now=manual_time)
    token = other_audience.issue("ns", "sa", timedelta(hours=1))
    with pytest.raises(MalformedTokenError, match=r"claims\.aud"):
        TokenAuthority(KEY, now=manual_time).verify(token)
    future = TokenAuthority(KEY, now=lambda: T0 + timedelta(hours=1))
    with pytest.raises(MalformedTokenError, match=r"claims\.iat"):
        TokenAuthority(KEY, now=manual_time).verify(future.issue("ns", "sa", timedelta(hours=2)))


def test_issue_validates_names_and_ttl(manual_time: ManualTime) -> None:
    authority = TokenAuthority(KEY, now=manual_time)
    with pytest.raises(ValueError, match="namespace"):
        authority.issue("Bad_NS", "sa", timedelta(hours=1))
    with pytest.raises(ValueError, match="positive"):
        authority.issue("ns", "sa", timedelta(0))
    with pytest.raises(ValueError, match="32 bytes"):
        TokenAuthority(b"short")


def test_key_file_is_created_private_and_reused(tmp_path: Path, manual_time: ManualTime) -> None:
    first = TokenAuthority.load_or_create(tmp_path / "ca", now=manual_time)
    path = tmp_path / "ca" / TOKEN_KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    token = first.issue("ns", "sa", timedelta(hours=1))
    again = TokenAuthority.load_or_create(tmp_path / "ca", now=manual_time)
    assert again.verify(token).namespace == "ns"
    with pytest.raises(TokenSignatureError):
        TokenAuthority.load_or_create(tmp_path / "elsewhere", now=manual_time).verify(token)


def test_token_bound_to_a_workload_group(manual_time: ManualTime) -> None:
    authority = TokenAuthority(KEY, now=manual_time)
    bound = authority.verify(authority.issue("apps", "vmsa", timedelta(hours=1), "vmapp"))
    assert bound.workload_group == "vmapp"
    assert _segments(authority.issue("apps", "vmsa", timedelta(hours=1), "vmapp"))[1]["wg"] == (
        "vmapp"
    )
    unbound = authority.verify(authority.issue("apps", "vmsa", timedelta(hours=1)))
    assert unbound.workload_group == ""
    with pytest.raises(ValueError, match="DNS-1123"):
        authority.issue("apps", "vmsa", timedelta(hours=1), "Not_A_Name")
