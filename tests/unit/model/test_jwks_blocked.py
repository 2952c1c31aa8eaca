"""Addresses the control plane never fetches JWKS from: CIDR matching, names resolved before
the check, redirects followed hop by hop, the discovery document's ``jwks_uri``, keys dropped
when their address becomes blocked; the setting as IstioOperators, ``--set`` and validation
take it; and IST0175."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from pilotfish.api.meshconfig import blocked_cidrs_in_jwks_uris, parse_cidrs
from pilotfish.api.profiles import SetError, install_operator, parse_set
from pilotfish.config.analyze.security import analyze_jwks_blocked_cidrs
from pilotfish.config.validation import validate
from pilotfish.errors import ValidationError
from pilotfish.model.jwks import (
    ALWAYS_BLOCKED,
    BlockedAddressError,
    GuardedBackend,
    JwksError,
    JwksFetcher,
    JwksSettings,
    blocked_by,
    follow_redirects,
)
from tests.unit.config.analyze._util import run, texts
from tests.unit.model.test_jwks import KEYS_A, eventually


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# --- CIDR matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.0.1", "fe80::1", "100.100.100.200", "fd00:ec2::254",
     "::ffff:169.254.169.254", "224.0.0.251", "ff02::fb"],
)  # fmt: skip
def test_link_local_and_cloud_metadata_addresses_are_always_blocked(address: str) -> None:
    assert blocked_by(ip(address), ALWAYS_BLOCKED) is not None


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "10.1.2.3", "192.168.1.1", "8.8.8.8", "::1", "100.100.100.201"]
)
def test_loopback_private_and_public_addresses_are_allowed_by_default(address: str) -> None:
    assert blocked_by(ip(address), ALWAYS_BLOCKED) is None


def test_configured_cidrs_match_their_own_family_and_mapped_ipv4() -> None:
    nets = parse_cidrs("127.0.0.0/8, 10.0.0.0/8 ,fd00::/8")
    assert blocked_by(ip("127.0.0.2"), nets) == ipaddress.ip_network("127.0.0.0/8")
    assert blocked_by(ip("10.255.0.1"), nets) == ipaddress.ip_network("10.0.0.0/8")
    assert blocked_by(ip("::ffff:127.0.0.1"), nets) == ipaddress.ip_network("127.0.0.0/8")
    assert blocked_by(ip("fd12::1"), nets) == ipaddress.ip_network("fd00::/8")
    assert blocked_by(ip("::1"), nets) is None
    assert blocked_by(ip("11.0.0.1"), nets) is None


def test_parse_cidrs_takes_bare_addresses_and_names_a_bad_entry() -> None:
    assert parse_cidrs("") == ()
    assert parse_cidrs(" , ") == ()
    assert parse_cidrs("127.0.0.2") == (ipaddress.ip_network("127.0.0.2/32"),)
    assert parse_cidrs("10.1.2.3/8") == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(ValueError, match=re.escape('"10.0.0.0/33" is not a CIDR')):
        parse_cidrs("127.0.0.0/8,10.0.0.0/33")


# --- names resolved, then checked -------------------------------------------------------------


def backend(blocked: str, dns: dict[str, list[str]]) -> GuardedBackend:
    nets = ALWAYS_BLOCKED + parse_cidrs(blocked)

    async def resolve(host: str, port: int) -> list[str]:
        if host not in dns:
            raise OSError(f"no such host {host}")
        return dns[host]

    return GuardedBackend(lambda: nets, resolve=resolve)


async def test_a_name_is_checked_by_the_addresses_it_resolves_to() -> None:
    b = backend(
        "127.0.0.0/8", {"mixed": ["127.0.0.1", "10.0.0.1"], "metadata": ["169.254.169.254"]}
    )
    assert await b.allowed_addresses("mixed", 80) == ["10.0.0.1"]
    with pytest.raises(BlockedAddressError) as err:
        await b.allowed_addresses("metadata", 80)
    assert "metadata (169.254.169.254)" in str(err.value)
    assert "link-local and cloud metadata" in str(err.value)
    with pytest.raises(BlockedAddressError, match="BLOCKED_CIDRS_IN_JWKS_URIS"):
        await b.allowed_addresses("127.0.0.5", 80)
    with pytest.raises(BlockedAddressError, match="fe80::1"):
        await b.allowed_addresses("[fe80::1]", 80)
    with pytest.raises(JwksError, match="cannot resolve nowhere"):
        await b.allowed_addresses("nowhere", 80)
    assert await b.allowed_addresses("10.9.9.9", 80) == ["10.9.9.9"]


# --- redirects ----------------------------------------------------------------------------------

Page = tuple[int, str | None, bytes]


class Network:
    """``url -> (status, Location, body)``; each hop first asks the backend for the host's
    allowed addresses, as a connection would."""

    def __init__(self, guard: GuardedBackend, pages: dict[str, Page]) -> None:
        self.guard = guard
        self.pages = pages
        self.hops: list[str] = []

    async def hop(self, url: str) -> Page:
        parts = urlsplit(url)
        await self.guard.allowed_addresses(parts.hostname or "", parts.port or 80)
        self.hops.append(url)
        return self.pages.get(url, (404, None, b""))


DNS = {
    "issuer.example": ["203.0.113.10"],
    "keys.example": ["203.0.113.11"],
    "metadata.example": ["169.254.169.254"],
    "inside.example": ["10.0.0.7"],
}


async def test_redirects_are_followed_hop_by_hop_and_each_hop_is_checked() -> None:
    net = Network(
        backend("10.0.0.0/8", DNS),
        {
            "http://issuer.example/jwks": (302, "/v2/jwks", b""),
            "http://issuer.example/v2/jwks": (301, "http://keys.example/jwks", b""),
            "http://keys.example/jwks": (200, None, b"KEYS"),
            "http://issuer.example/to-metadata": (307, "http://metadata.example/latest", b""),
            "http://issuer.example/to-inside": (308, "http://inside.example/jwks", b""),
            "http://issuer.example/loop": (302, "/loop", b""),
            "http://issuer.example/file": (302, "file:///etc/passwd", b""),
        },
    )
    assert await follow_redirects("http://issuer.example/jwks", net.hop) == b"KEYS"
    assert net.hops == [
        "http://issuer.example/jwks",
        "http://issuer.example/v2/jwks",
        "http://keys.example/jwks",
    ]
    with pytest.raises(BlockedAddressError) as err:
        await follow_redirects("http://issuer.example/to-metadata", net.hop)
    assert str(err.value).startswith(
        "GET http://metadata.example/latest (redirected from http://issuer.example/to-metadata)"
    )
    with pytest.raises(
        BlockedAddressError, match=re.escape("10.0.0.0/8, blocked by BLOCKED_CIDRS")
    ):
        await follow_redirects("http://issuer.example/to-inside", net.hop)
    with pytest.raises(JwksError, match="more than 10 redirects"):
        await follow_redirects("http://issuer.example/loop", net.hop)
    with pytest.raises(JwksError, match="is not http"):
        await follow_redirects("http://issuer.example/file", net.hop)
    with pytest.raises(JwksError, match="HTTP 404"):
        await follow_redirects("http://issuer.example/missing", net.hop)


# --- the fetcher: discovery, status, keys dropped -----------------------------------------------


async def started(pages: dict[str, Page], changes: list[int]) -> tuple[JwksFetcher, Network]:
    fetcher = JwksFetcher(
        JwksSettings(retry_min=0.01, retry_max=0.02), on_change=lambda: changes.append(1)
    )
    await fetcher.start()
    guard = fetcher.backend
    guard._resolve = backend("", DNS)._resolve  # the test's DNS, the fetcher's blocked CIDRs
    net = Network(guard, pages)
    fetcher._hop = net.hop  # type: ignore[method-assign]
    return fetcher, net


def last_error(fetcher: JwksFetcher, uri: str) -> str:
    return next(str(s["last_error"]) for s in fetcher.status() if s["uri"] == uri)


async def test_the_discovery_documents_jwks_uri_is_checked() -> None:
    discovery = "http://issuer.example/.well-known/openid-configuration"
    doc = json.dumps({"jwks_uri": "http://metadata.example/latest/meta-data"}).encode()
    changes: list[int] = []
    fetcher, net = await started({discovery: (200, None, doc)}, changes)
    try:
        assert fetcher.jwks(discovery) is None
        await eventually(lambda: bool(last_error(fetcher, discovery)), "the fetch failing")
        error = last_error(fetcher, discovery)
        assert "GET http://metadata.example/latest/meta-data" in error
        assert "169.254.169.254 is in 169.254.0.0/16" in error
        assert fetcher.jwks(discovery) is None
        assert net.hops == [discovery]  # the metadata address was never asked
        assert changes == []
    finally:
        await fetcher.stop()


async def test_keys_fetched_before_are_dropped_when_their_address_becomes_blocked() -> None:
    uri = "http://inside.example/jwks"
    changes: list[int] = []
    fetcher, _ = await started({uri: (200, None, KEYS_A.encode())}, changes)
    try:
        fetcher.jwks(uri)
        await eventually(lambda: fetcher.jwks(uri) == KEYS_A, "keys fetched")
        assert changes == [1]
        fetcher.set_blocked_cidrs(parse_cidrs("10.0.0.0/8"))
        await eventually(lambda: fetcher.jwks(uri) is None, "keys dropped")
        assert changes == [1, 1]
        assert "10.0.0.0/8, blocked by BLOCKED_CIDRS_IN_JWKS_URIS" in last_error(fetcher, uri)
        fetcher.set_blocked_cidrs(())
        await eventually(lambda: fetcher.jwks(uri) == KEYS_A, "keys fetched again")
        assert last_error(fetcher, uri) == ""
    finally:
        await fetcher.stop()


# --- the setting --------------------------------------------------------------------------------


def operator(name: str, values: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": name, "namespace": "istio-system"},
        "spec": {"values": values} if values is not None else {},
    }


def env(value: object) -> dict[str, Any]:
    return {"pilot": {"env": {"BLOCKED_CIDRS_IN_JWKS_URIS": value}}}


def test_the_setting_comes_from_the_istio_operators_in_name_order() -> None:
    assert blocked_cidrs_in_jwks_uris([]) == ""
    assert blocked_cidrs_in_jwks_uris([operator("installed-state", None)]) == ""
    bodies = [operator("b", env("10.0.0.0/8")), operator("a", env("127.0.0.0/8"))]
    assert blocked_cidrs_in_jwks_uris(bodies) == "10.0.0.0/8"


def test_set_takes_the_setting_and_refuses_what_is_not_a_cidr() -> None:
    body = install_operator(
        None, [parse_set("values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS=127.0.0.0/8,10.0.0.0/8")]
    )
    assert blocked_cidrs_in_jwks_uris([body]) == "127.0.0.0/8,10.0.0.0/8"
    with pytest.raises(SetError, match=re.escape('"nope" is not a CIDR')):
        install_operator(None, [parse_set("values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS=nope")])
    with pytest.raises(SetError, match=re.escape("values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS")):
        install_operator(None, [parse_set("values.pilot.env.PILOT_SOMETHING_ELSE=1")])


def test_apply_takes_the_setting_and_refuses_a_bad_one_by_field() -> None:
    v = validate(operator("jwks", env("127.0.0.0/8, 169.254.0.0/16")))
    assert [w.path for w in v.warnings] == []
    other = validate(operator("jwks", {"pilot": {"env": {"PILOT_X": "1"}}}))
    assert {w.path: w.reason for w in other.warnings} == {
        "spec.values.pilot.env.PILOT_X": "not applied by Pilotfish"
    }
    with pytest.raises(ValidationError) as err:
        validate(operator("jwks", env("127.0.0.0/8,300.0.0.0/8")))
    found = {e.path: e.reason for e in err.value.errors}
    path = "spec.values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS"
    assert '"300.0.0.0/8" is not a CIDR' in found[path], found


# --- IST0175 ------------------------------------------------------------------------------------

OPERATOR = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: installed-state, namespace: istio-system}
spec: {profile: default}
"""


def authn(name: str, namespace: str = "default") -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  jwtRules: [{{issuer: "https://issuer.example", jwksUri: "https://issuer.example/jwks"}}]
"""


def blocking(value: str) -> str:
    return f"""
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {{name: jwks, namespace: istio-system}}
spec:
  values: {{pilot: {{env: {{BLOCKED_CIDRS_IN_JWKS_URIS: "{value}"}}}}}}
"""


def test_ist0175_when_request_authentications_exist_and_nothing_is_blocked() -> None:
    msgs = run(analyze_jwks_blocked_cidrs, OPERATOR, authn("b"), authn("a", "prod"))
    assert [(m.code, str(m.resource)) for m in msgs] == [
        ("IST0175", "IstioOperator istio-system/installed-state")
    ]
    assert "2 RequestAuthentication resource(s) exist (default/b, prod/a)" in texts(msgs)[0]
    many = [authn(f"r{i}") for i in range(7)]
    assert "default/r4, and 2 more" in texts(run(analyze_jwks_blocked_cidrs, OPERATOR, *many))[0]


def test_no_ist0175_when_the_setting_is_set_or_nothing_needs_it() -> None:
    assert run(analyze_jwks_blocked_cidrs, OPERATOR, blocking("10.0.0.0/8"), authn("a")) == []
    assert run(analyze_jwks_blocked_cidrs, OPERATOR) == []
    # Without the control plane's IstioOperator there is nothing to say it about (istioctl
    # likewise needs istiod's Deployment among the resources).
    assert run(analyze_jwks_blocked_cidrs, authn("a")) == []
    # An empty value blocks nothing: still reported.
    assert len(run(analyze_jwks_blocked_cidrs, OPERATOR, blocking(""), authn("a"))) == 2
