from __future__ import annotations

import pytest

from pilotfish.identity.errors import InvalidSpiffeIdError
from pilotfish.identity.spiffe import SpiffeId


def test_round_trip_uri_and_principal() -> None:
    sid = SpiffeId.parse("spiffe://cluster.local/ns/default/sa/bookinfo-reviews")
    assert sid == SpiffeId("cluster.local", "default", "bookinfo-reviews")
    assert str(sid) == "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    assert sid.principal == "cluster.local/ns/default/sa/bookinfo-reviews"
    assert SpiffeId.from_principal(sid.principal) == sid


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("cluster.local/ns/default/sa/x", "must start with spiffe://"),
        ("spiffe://cluster.local/ns/default", "must have the form"),
        ("spiffe://cluster.local/sa/x/ns/default", "must have the form"),
        ("spiffe://cluster.local/ns/default/sa/x/extra", "must have the form"),
        ("spiffe://Cluster.Local/ns/default/sa/x", "trust domain"),
        ("spiffe://cluster.local/ns/Default/sa/x", "namespace 'Default'"),
        ("spiffe://cluster.local/ns/default/sa/", "service account ''"),
        ("spiffe://cluster.local/ns/-a/sa/x", "namespace"),
    ],
)
def test_invalid_ids_name_the_part(text: str, fragment: str) -> None:
    with pytest.raises(InvalidSpiffeIdError) as err:
        SpiffeId.parse(text)
    assert fragment in str(err.value)
    assert isinstance(err.value, ValueError)


def test_service_account_may_be_a_subdomain_but_namespace_not() -> None:
    assert SpiffeId("td", "ns", "a.b-c").service_account == "a.b-c"
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId("td", "a.b", "sa")
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId("td", "n" * 64, "sa")
