"""Envoy matchers for AuthorizationPolicy values (used by ``authz``): Istio's wildcards as
``StringMatcher``s, header and Host matchers, CIDR ranges, and JWT payload matchers that read
what ``jwt_authn`` stores in dynamic metadata (filter ``envoy.filters.http.jwt_authn``, key
``payload``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2
from envoy.config.rbac.v3.rbac_pb2 import Principal
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import metadata_pb2, regex_pb2, string_pb2, value_pb2

from pilotfish.translate.common import u32

JWT_AUTHN_FILTER = "envoy.filters.http.jwt_authn"
#: Key under which ``jwt_authn`` stores the verified payload (``payload_in_metadata``).
JWT_PAYLOAD_KEY = "payload"


class Unsupported(Exception):
    """A key Envoy cannot match here: HTTP-only on a TCP chain, or unknown."""


_RE2_SPECIAL = set("\\.+*?()|[]{}^$")


def re2_escape(text: str) -> str:
    return "".join("\\" + c if c in _RE2_SPECIAL else c for c in text)


def regex(pattern: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def glob(value: str, prefix: str = "", ignore_case: bool = False) -> string_pb2.StringMatcher:
    """Istio's value matching: ``*`` any non-empty, ``*x`` suffix, ``x*`` prefix, else exact;
    ``prefix`` is prepended to what the value names (``spiffe://`` for principals)."""
    if value == "*":
        return regex(".+")
    if value.startswith("*"):
        if prefix:
            return regex(re2_escape(prefix) + ".*" + re2_escape(value[1:]))
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def header_matcher(name: str, value: str) -> rc.HeaderMatcher:
    if value == "*":
        return rc.HeaderMatcher(name=name, present_match=True)
    return rc.HeaderMatcher(name=name, string_match=glob(value))


def host_matcher(value: str) -> rc.HeaderMatcher:
    """``hosts``: case-insensitive, with or without a port in the Host header."""
    if value == "*":
        return rc.HeaderMatcher(name=":authority", present_match=True)
    if value.startswith("*") or value.endswith("*"):
        return rc.HeaderMatcher(name=":authority", string_match=glob(value, ignore_case=True))
    pattern = "(?i)" + re2_escape(value) + "(:[0-9]+)?"
    return rc.HeaderMatcher(name=":authority", string_match=regex(pattern))


def cidr(value: str) -> address_pb2.CidrRange:
    net = ipaddress.ip_network(value, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(net.network_address), prefix_len=u32(net.prefixlen)
    )


def jwt_claim_matcher(path: Sequence[str], value: str) -> metadata_pb2.MetadataMatcher:
    """A JWT payload claim equal to ``value`` or, for a list claim, containing it."""
    s = glob(value)
    either = value_pb2.ValueMatcher(
        or_match=value_pb2.OrMatcher(
            value_matchers=[
                value_pb2.ValueMatcher(
                    list_match=value_pb2.ListMatcher(one_of=value_pb2.ValueMatcher(string_match=s))
                ),
                value_pb2.ValueMatcher(string_match=s),
            ]
        )
    )
    return metadata_matcher(JWT_AUTHN_FILTER, [JWT_PAYLOAD_KEY, *path], either)


def metadata_matcher(
    filter_name: str, path: Sequence[str], value: value_pb2.ValueMatcher
) -> metadata_pb2.MetadataMatcher:
    return metadata_pb2.MetadataMatcher(
        filter=filter_name,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in path],
        value=value,
    )


def _string_claim(claim: str, m: string_pb2.StringMatcher) -> Principal:
    return Principal(
        metadata=metadata_matcher(
            JWT_AUTHN_FILTER, [JWT_PAYLOAD_KEY, claim], value_pb2.ValueMatcher(string_match=m)
        )
    )


def request_principal(value: str) -> Principal:
    """``iss/sub`` (split at the last ``/``, the issuer may be a URL) with wildcards."""
    anything = regex(".+")
    iss, sep, sub = value.rpartition("/")
    if not sep:
        iss, sub = value, ""
    if value == "*":
        m_iss, m_sub = anything, anything
    elif value.startswith("*"):
        if sep:
            m_iss = anything if iss == "*" else glob(iss)
            m_sub = string_pb2.StringMatcher(exact=sub)
        else:
            m_iss, m_sub = anything, glob(value)
    elif value.endswith("*"):
        if sep:
            m_iss = string_pb2.StringMatcher(exact=iss)
            m_sub = glob(sub) if sub != "*" else anything
        else:
            m_iss, m_sub = glob(value), anything
    else:
        m_iss, m_sub = string_pb2.StringMatcher(exact=iss), string_pb2.StringMatcher(exact=sub)
    return Principal(
        and_ids=Principal.Set(ids=[_string_claim("iss", m_iss), _string_claim("sub", m_sub)])
    )


def parse_claim_path(key: str) -> list[str]:
    """``request.auth.claims[a][b]`` -> ``["a", "b"]``; ``[a.b]`` stays one claim name."""
    rest = key[len("request.auth.claims") :]
    parts = []
    while rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            break
        parts.append(rest[1:end])
        rest = rest[end + 1 :]
    if rest or not parts:
        raise Unsupported(f"bad key {key}: expected request.auth.claims[name][...]")
    return parts


def bracket_name(key: str, prefix: str) -> str:
    inner = key[len(prefix) :]
    if not (inner.startswith("[") and inner.endswith("]") and len(inner) > 2):
        raise Unsupported(f"bad key {key}: expected {prefix}[name]")
    return inner[1:-1]
