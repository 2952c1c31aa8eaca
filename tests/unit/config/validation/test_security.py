"""AuthorizationPolicy, PeerAuthentication and RequestAuthentication rules."""

from __future__ import annotations

from typing import Any

import pytest

from ._util import body, has, ok, problems


def ap(**spec: Any) -> dict[str, Any]:
    return body("AuthorizationPolicy", spec)


def pa(**spec: Any) -> dict[str, Any]:
    return body("PeerAuthentication", spec)


def ra(*rules: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return body("RequestAuthentication", {"jwtRules": list(rules), **spec})


# --- AuthorizationPolicy ---------------------------------------------------------------------


def test_empty_spec_is_valid() -> None:
    ok(ap())


def test_service_accounts_with_namespaces_or_principals() -> None:
    for other in ({"namespaces": ["ns"]}, {"principals": ["cluster.local/ns/a/sa/b"]}):
        src = {"serviceAccounts": ["ns/sa"], **other}
        has(
            ap(rules=[{"from": [{"source": src}]}]),
            "spec.rules[0].from[0].source",
            "Cannot set serviceAccounts with namespaces or principals",
        )
    ok(
        ap(
            rules=[
                {"from": [{"source": {"serviceAccounts": ["ns/sa"], "ipBlocks": ["10.0.0.0/8"]}}]}
            ]
        )
    )


def test_deny_without_rules() -> None:
    has(ap(action="DENY"), "spec.rules", "DENY action without `rules` is meaningless")
    ok(ap(action="DENY", rules=[{}]))


def test_unknown_action_and_custom_provider() -> None:
    has(ap(action="REJECT"), "spec.action", 'Unsupported value: "REJECT"')
    has(ap(action="CUSTOM", rules=[{}]), "spec.provider.name", "`provider.name` must not be empty")
    has(
        ap(action="ALLOW", provider={"name": "ext"}),
        "spec.provider",
        "`provider` must not be with non CUSTOM action",
    )
    # A well-formed CUSTOM policy is accepted (the provider is the mesh config's).
    ok(
        ap(
            action="CUSTOM",
            provider={"name": "ext-authz"},
            rules=[{"to": [{"operation": {"paths": ["/admin/*"]}}]}],
        )
    )
    ok(ap(action="AUDIT", rules=[{}]))
    dry = ap(action="CUSTOM", provider={"name": "ext-authz"}, rules=[{}])
    dry["metadata"]["annotations"] = {"istio.io/dry-run": "true"}
    assert [w.path for w in ok(dry).warnings] == ["metadata.annotations[istio.io/dry-run]"]


@pytest.mark.parametrize(
    ("key", "values", "path", "reason"),
    [
        ("request.foo", ["x"], "key", "unknown attribute: request.foo"),
        ("request.headers", ["x"], "key", "bad key (request.headers): should have format a[b]"),
        ("source.ip", ["not-an-ip"], "values", "bad IP address (not-an-ip)"),
        ("destination.port", ["http"], "values", "bad port (http)"),
        ("destination.namespace", ["x"], "key", "replaced by the metadata.namespace"),
    ],
)
def test_invalid_when(key: str, values: list[str], path: str, reason: str) -> None:
    has(
        ap(rules=[{"when": [{"key": key, "values": values}]}]),
        f"spec.rules[0].when[0].{path}",
        reason,
    )


def test_when_needs_values() -> None:
    has(
        ap(rules=[{"when": [{"key": "source.ip"}]}]),
        "spec.rules[0].when[0]",
        "at least one of `values` or `notValues` must be set for key source.ip",
    )


def test_valid_when_keys() -> None:
    when = [
        {"key": "request.headers[x-token]", "values": ["a"]},
        {"key": "source.ip", "values": ["10.0.0.1", "10.1.0.0/16"]},
        {"key": "remote.ip", "notValues": ["1.2.3.4"]},
        {"key": "source.namespace", "values": ["default"]},
        {"key": "source.principal", "values": ["cluster.local/ns/a/sa/b"]},
        {"key": "request.auth.principal", "values": ["iss/sub"]},
        {"key": "request.auth.audiences", "values": ["aud"]},
        {"key": "request.auth.presenter", "values": ["p"]},
        {"key": "request.auth.claims[groups]", "values": ["admin"]},
        {"key": "destination.ip", "values": ["10.0.0.2"]},
        {"key": "destination.port", "values": ["8080"]},
        {"key": "connection.sni", "values": ["a.example.com"]},
        {"key": "experimental.envoy.filters.network.mysql_proxy[db.table]", "values": ["[update]"]},
    ]
    ok(ap(rules=[{"when": when}]))


def test_operation_ports() -> None:
    for port in ("0", "65536", "http", "-1"):
        has(
            ap(rules=[{"to": [{"operation": {"ports": [port]}}]}]),
            "spec.rules[0].to[0].operation.ports",
            f"bad port ({port})",
        )
    ok(ap(rules=[{"to": [{"operation": {"ports": ["1", "8080", "65535"], "methods": ["GET"]}}]}]))
    has(
        ap(rules=[{"to": [{"operation": {"ports": [8080]}}]}]),
        "spec.rules[0].to[0].operation.ports[0]",
        "must be of type string",
    )


def test_empty_source_and_operation() -> None:
    has(
        ap(rules=[{"from": [{"source": {}}]}]),
        "spec.rules[0].from[0].source",
        "`from.source` must not be empty",
    )
    has(
        ap(rules=[{"to": [{"operation": {}}]}]),
        "spec.rules[0].to[0].operation",
        "`to.operation` must not be empty",
    )
    has(ap(rules=[{"from": []}]), "spec.rules[0].from", "`from` must not be empty")


def test_selector_and_target_ref_exclusive() -> None:
    has(
        ap(
            selector={"matchLabels": {"app": "a"}},
            targetRef={"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"},
        ),
        "spec",
        "only one of targetRefs or workloadSelector can be set",
    )
    ok(ap(targetRef={"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}))


# --- PeerAuthentication ----------------------------------------------------------------------


def test_port_level_mtls_needs_selector() -> None:
    has(
        pa(portLevelMtls={"8080": {"mode": "DISABLE"}}),
        "spec.portLevelMtls",
        "mesh/namespace peer authentication cannot have port level mTLS",
    )
    ok(pa(selector={"matchLabels": {"app": "a"}}, portLevelMtls={"8080": {"mode": "DISABLE"}}))
    ok(pa(selector={"matchLabels": {"app": "a"}}, portLevelMtls={8080: {"mode": "DISABLE"}}))


def test_port_level_mtls_range() -> None:
    has(
        pa(selector={"matchLabels": {"app": "a"}}, portLevelMtls={"70000": {"mode": "STRICT"}}),
        "spec.portLevelMtls[70000]",
        "port must be in range 1..65535",
    )
    has(
        pa(selector={"matchLabels": {"app": "a"}}, portLevelMtls={"0": {"mode": "STRICT"}}),
        "spec.portLevelMtls[0]",
        "port must be in range 1..65535",
    )


def test_mtls_modes() -> None:
    has(pa(mtls={"mode": "MAYBE"}), "spec.mtls.mode", 'Unsupported value: "MAYBE"')
    for mode in ("UNSET", "DISABLE", "PERMISSIVE", "STRICT"):
        ok(pa(mtls={"mode": mode}))


# --- RequestAuthentication -------------------------------------------------------------------

JWKS = '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "abc", "kid": "k"}]}'


def test_jwks_uri_needs_http_scheme() -> None:
    has(
        ra({"issuer": "i", "jwksUri": "auth.example.com/jwks.json"}),
        "spec.jwtRules[0].jwksUri",
        'URI scheme "" is not supported',
    )
    has(
        ra({"issuer": "i", "jwksUri": "ftp://auth.example.com/jwks.json"}),
        "spec.jwtRules[0].jwksUri",
        'URI scheme "ftp" is not supported',
    )
    ok(ra({"issuer": "i", "jwksUri": "http://auth.example.com:8080/jwks.json"}))


def test_jwks_and_jwks_uri_together() -> None:
    has(
        ra({"issuer": "i", "jwks": JWKS, "jwksUri": "https://a.com/j"}),
        "spec.jwtRules[0]",
        "only one of jwks or jwksUri may be set",
    )
    ok(ra({"issuer": "i", "jwks": JWKS}))
    has(ra({"issuer": "i", "jwks": "{not json"}), "spec.jwtRules[0].jwks", "jwks parse error")


def test_output_claim_header_names() -> None:
    has(
        ra({"issuer": "i", "outputClaimToHeaders": [{"header": "x bad", "claim": "sub"}]}),
        "spec.jwtRules[0].outputClaimToHeaders[0].header",
        "header name x bad is not a valid header name",
    )
    ok(ra({"issuer": "i", "outputClaimToHeaders": [{"header": "x-jwt-sub", "claim": "sub"}]}))


def test_issuer_required() -> None:
    has(ra({"jwksUri": "https://a.com/j"}), "spec.jwtRules[0].issuer", "issuer must be set")
    assert (
        problems(
            ra(
                {
                    "issuer": "https://a.com",
                    "fromHeaders": [{"name": "Authorization", "prefix": "Bearer "}],
                    "timeout": "5s",
                }
            )
        )
        == []
    )
