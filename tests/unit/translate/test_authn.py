"""RequestAuthentication -> Envoy jwt_authn: provider fields, inlined keys (inline, fetched,
discovery, placeholder), requirements, merging and scope."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2

from pilotfish.api.security import JWTRule
from pilotfish.model.proxy import Proxy
from pilotfish.translate.authn import (
    PLACEHOLDER_JWKS,
    jwks_uri,
    jwks_uris,
    jwt_authn_filters,
    usable_jwks,
)
from pilotfish.translate.filters import inbound_http_filters
from tests.unit.translate.fixtures import BOOKINFO_CORE, push_for, sidecar_node

REVIEWS = sidecar_node(app="reviews", ip="10.1.0.12", labels={"app": "reviews", "version": "v1"})
KEY = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
       "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "kid": "k1"}  # fmt: skip
JWKS = json.dumps({"keys": [KEY]})


def ra(rules: list[dict[str, Any]], name: str = "jwt", ns: str = "default", **spec: Any) -> dict:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"jwtRules": rules, **spec},
    }


def config(
    docs: list[dict], lookup: Any = None, node: Any = REVIEWS
) -> jwt_pb2.JwtAuthentication | None:
    push = push_for(BOOKINFO_CORE + docs, jwks=lookup)
    filters = jwt_authn_filters(push, Proxy.from_node(node, push))
    if not filters:
        return None
    [f] = filters
    assert f.name == "envoy.filters.http.jwt_authn"
    cfg = jwt_pb2.JwtAuthentication()
    assert f.typed_config.Unpack(cfg)
    return cfg


def test_no_request_authentication_no_filter() -> None:
    assert config([]) is None
    assert config([ra([])]) is None


def test_every_rule_field() -> None:
    rule = {
        "issuer": "https://auth.example.com",
        "audiences": ["my-service", "other"],
        "jwks": JWKS,
        "fromHeaders": [{"name": "x-jwt", "prefix": "Bearer "}, {"name": "x-raw"}],
        "fromParams": ["token"],
        "fromCookies": ["session"],
        "forwardOriginalToken": True,
        "outputClaimToHeaders": [{"header": "x-group", "claim": "groups"}],
        "outputPayloadToHeader": "x-jwt-payload",
        "spaceDelimitedClaims": ["roles"],
    }
    cfg = config([ra([rule])])
    assert cfg is not None
    p = cfg.providers["https://auth.example.com"]
    assert p.issuer == "https://auth.example.com"
    assert list(p.audiences) == ["my-service", "other"]
    assert p.local_jwks.inline_string == JWKS
    assert [(h.name, h.value_prefix) for h in p.from_headers] == [
        ("x-jwt", "Bearer "),
        ("x-raw", ""),
    ]
    assert list(p.from_params) == ["token"]
    assert list(p.from_cookies) == ["session"]
    assert p.forward is True
    assert [(c.header_name, c.claim_name) for c in p.claim_to_headers] == [("x-group", "groups")]
    assert p.forward_payload_header == "x-jwt-payload"
    assert p.payload_in_metadata == "payload"
    assert list(p.normalize_payload_in_metadata.space_delimited_claims) == [
        "scope",
        "permission",
        "roles",
    ]


def test_defaults_token_locations_and_not_forwarded() -> None:
    cfg = config([ra([{"issuer": "iss", "jwks": JWKS}])])
    assert cfg is not None
    p = cfg.providers["iss"]
    # Envoy's defaults (Authorization: Bearer, access_token) are Istio's.
    assert not p.from_headers and not p.from_params
    assert p.forward is False
    assert not p.audiences


def test_missing_token_allowed_any_provider_verifies() -> None:
    cfg = config([ra([{"issuer": "a", "jwks": JWKS}, {"issuer": "b", "jwks": JWKS}])])
    assert cfg is not None
    [rule] = cfg.rules
    assert rule.match.prefix == "/"
    reqs = rule.requires.requires_any.requirements
    assert [r.provider_name for r in reqs[:-1]] == ["a", "b"]
    assert reqs[-1].HasField("allow_missing")
    assert cfg.bypass_cors_preflight


def test_jwks_uri_is_read_from_the_lookup() -> None:
    asked: list[str] = []

    def lookup(uri: str) -> str | None:
        asked.append(uri)
        return JWKS

    rule = {"issuer": "iss", "jwksUri": "https://keys.example.com/jwks.json"}
    cfg = config([ra([rule])], lookup)
    assert cfg is not None
    assert cfg.providers["iss"].local_jwks.inline_string == JWKS
    assert asked == ["https://keys.example.com/jwks.json"]


def test_unknown_keys_use_a_placeholder_that_verifies_nothing() -> None:
    rule = {"issuer": "iss", "jwksUri": "https://keys.example.com/jwks.json"}
    cfg = config([ra([rule])], lambda uri: None)
    assert cfg is not None
    assert cfg.providers["iss"].local_jwks.inline_string == PLACEHOLDER_JWKS
    # Unbound push (no fetcher): the same.
    cfg = config([ra([rule])])
    assert cfg is not None
    assert cfg.providers["iss"].local_jwks.inline_string == PLACEHOLDER_JWKS


@pytest.mark.parametrize(
    "bad",
    ['{"keys": []}', "not json", '{"keys": [{"kty": "RSA", "n": "abc"}]}', "[1]", '{"k": 1}'],
)
def test_unusable_key_sets_use_the_placeholder(bad: str) -> None:
    assert usable_jwks(bad) is None
    cfg = config([ra([{"issuer": "iss", "jwks": bad}])])
    assert cfg is not None
    assert cfg.providers["iss"].local_jwks.inline_string == PLACEHOLDER_JWKS


def test_usable_jwks_keeps_good_keys_and_wraps_a_single_key() -> None:
    assert usable_jwks(JWKS) == JWKS
    assert json.loads(usable_jwks(json.dumps(KEY)) or "") == {"keys": [KEY]}
    mixed = json.dumps({"keys": [KEY, {"kty": "RSA"}]})
    assert json.loads(usable_jwks(mixed) or "") == {"keys": [KEY]}
    assert usable_jwks(PLACEHOLDER_JWKS) == PLACEHOLDER_JWKS


def test_where_keys_come_from() -> None:
    def rule(**spec: str) -> JWTRule:
        return JWTRule.model_validate(spec)

    assert jwks_uri(rule(issuer="i", jwks=JWKS)) is None
    assert jwks_uri(rule(issuer="i", jwksUri="http://k/j")) == "http://k/j"
    assert (
        jwks_uri(rule(issuer="https://accounts.example.com/"))
        == "https://accounts.example.com/.well-known/openid-configuration"
    )
    assert jwks_uri(rule(issuer="not-a-url")) is None
    push = push_for(
        [
            ra([{"issuer": "a", "jwksUri": "http://k/1"}, {"issuer": "b", "jwks": JWKS}], "x"),
            ra([{"issuer": "c", "jwksUri": "http://k/1"}, {"issuer": "https://d"}], "y"),
        ]
    )
    assert jwks_uris(push.request_authentications) == [
        "http://k/1",
        "https://d/.well-known/openid-configuration",
    ]


def test_policies_merge_across_mesh_namespace_and_workload() -> None:
    docs = [
        ra([{"issuer": "mesh", "jwks": JWKS}], "m", "istio-system"),
        ra([{"issuer": "ns", "jwks": JWKS}], "n"),
        ra([{"issuer": "wl", "jwks": JWKS}], "w", selector={"matchLabels": {"app": "reviews"}}),
        ra([{"issuer": "other-wl", "jwks": JWKS}], "o", selector={"matchLabels": {"app": "x"}}),
        ra([{"issuer": "other-ns", "jwks": JWKS}], "n", "prod"),
    ]
    cfg = config(docs)
    assert cfg is not None
    assert sorted(cfg.providers) == ["mesh", "ns", "wl"]


def test_same_rule_twice_is_one_provider_same_issuer_twice_two() -> None:
    same = {"issuer": "iss", "jwks": JWKS}
    cfg = config([ra([same], "a"), ra([same], "b")])
    assert cfg is not None and list(cfg.providers) == ["iss"]
    cfg = config([ra([same], "a"), ra([{**same, "audiences": ["x"]}], "b")])
    assert cfg is not None and sorted(cfg.providers) == ["iss", "iss#2"]
    names = [r.provider_name for r in cfg.rules[0].requires.requires_any.requirements[:-1]]
    assert names == ["iss", "iss#2"]


def test_jwt_authn_comes_before_rbac() -> None:
    ap = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "a", "namespace": "default"},
        "spec": {"rules": [{"from": [{"source": {"requestPrincipals": ["*"]}}]}]},
    }
    push = push_for([*BOOKINFO_CORE, ap, ra([{"issuer": "iss", "jwks": JWKS}])])
    names = [f.name for f in inbound_http_filters(push, Proxy.from_node(REVIEWS, push), 9080)]
    assert names == ["envoy.filters.http.jwt_authn", "envoy.filters.http.rbac"]


def test_keys_come_from_the_push_context() -> None:
    rule = {"issuer": "iss", "jwksUri": "https://k/j"}
    push = push_for([*BOOKINFO_CORE, ra([rule])], jwks=lambda uri: JWKS)
    [f] = jwt_authn_filters(push, Proxy.from_node(REVIEWS, push))
    cfg = jwt_pb2.JwtAuthentication()
    f.typed_config.Unpack(cfg)
    assert cfg.providers["iss"].local_jwks.inline_string == JWKS
