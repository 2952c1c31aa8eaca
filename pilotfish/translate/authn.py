"""RequestAuthentication -> Envoy ``jwt_authn`` on the inbound side of the selected workloads
(and on gateways whose labels a policy selects), with Istio's semantics.

Every RequestAuthentication that applies to a proxy (root namespace = mesh-wide, namespace,
``selector``; see ``authz.policy_applies``) contributes its ``jwtRules``; each rule becomes one
provider. The filter requires any one provider *or* no token (``allow_missing``): a request
without a token passes (an AuthorizationPolicy can still require ``requestPrincipals``, which
then answers 403), a token that fails verification (bad signature, expired, wrong issuer or
audience) gets 401. The verified payload is stored in dynamic metadata under
``envoy.filters.http.jwt_authn`` / ``payload``, where the RBAC matchers of ``authz`` read
``iss``, ``sub``, ``aud``, ``azp`` and claims.

Keys are always inlined (``local_jwks``): the sidecar may not reach the issuer. ``jwks`` is used
as written; ``jwksUri`` (or, when neither is set, the issuer's OpenID discovery document) is
fetched by the control plane (``pilotfish.model.jwks``) and read here through a
the PushContext's ``jwks`` lookup. Until keys are known (or
when a key set holds no usable key, which Envoy would reject with the whole listener) a
placeholder key set that verifies no token is used, so tokens are refused (401) rather than
trusted, as Istio does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import empty_pb2

from pilotfish.api.security import JWTRule, RequestAuthenticationSpec
from pilotfish.model.config import PolicyConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.translate.authz import JWT_AUTHN_FILTER, JWT_PAYLOAD_KEY, applicable
from pilotfish.translate.common import pack


def jwt_failure_key(index: int) -> str:
    """The ``jwt_authn`` metadata key the ``index``-th provider's failure status is written
    under (with the mesh config's ``namePolicyInDenials``; see ``denials``). No ``:`` (the
    access log format's path separator), so a reply can quote its ``message``."""
    return f"pilotfish_failed_{index}"


RequestAuthentication = PolicyConfig[RequestAuthenticationSpec]
#: ``uri -> JWKS JSON`` (None while unknown or unreachable).
JwksLookup = Callable[[str], str | None]

OIDC_DISCOVERY_PATH = "/.well-known/openid-configuration"
#: Claims Istio always treats as space-delimited lists.
DEFAULT_SPACE_DELIMITED_CLAIMS = ("scope", "permission")

#: A well-formed key set whose RSA key nobody holds: every token fails verification.
PLACEHOLDER_JWKS = json.dumps(
    {
        "keys": [
            {
                "kty": "RSA",
                "kid": "pilotfish-jwks-unavailable",
                "alg": "RS256",
                "e": "AQAB",
                "n": (
                    "rmMy2tYSNafZUAn-mUj6hHBSyhanES3ST3n_NGjz7CELQaGnBWovi7P71iAKfnHy874E6bf6Zd2"
                    "MGbkSQJmAhSthNwvwW24sCEhQBPYkEzXxnX5ogO04ekN0zoiV56eO_NvdwdhbJ2qLENy7o_xffdLK"
                    "cRgaIapTrgkrSLPePh_M46o_3X6RdUUaETXYQ-Sf8aLMt3onReioUxe_XEAVePoKTcxHHe7nv9S5w"
                    "ktvIoHF5KJ2MlZx1WlbN-8rNn0-oqrrPPEGO-HLlbPSopsNFxnnD3MB00XAm4r4122n02T7Wnsx9g"
                    "fv8d8c70LksfVwm3lwXFFovWQEHLFaWIarwQ"
                ),
            }
        ]
    }
)

_KEY_FIELDS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y"), "oct": ("k",), "OKP": ("crv", "x")}


def _has_key_fields(key: dict[str, Any]) -> bool:
    fields = _KEY_FIELDS.get(str(key.get("kty")))
    return fields is not None and all(isinstance(key.get(f), str) and key[f] for f in fields)


def usable_jwks(text: str | None) -> str | None:
    """``text`` as a key set Envoy can load (a single JWK is wrapped in ``keys``), or None
    when it holds no usable key (Envoy would reject the whole listener)."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    wrapped = isinstance(data, dict) and "kty" in data and "keys" not in data
    if wrapped:
        data = {"keys": [data]}
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list):
        return None
    good = [k for k in keys if isinstance(k, dict) and _has_key_fields(k)]
    if not good:
        return None
    return text if len(good) == len(keys) and not wrapped else json.dumps({"keys": good})


def jwks_uri(rule: JWTRule) -> str | None:
    """Where the control plane fetches a rule's keys: ``jwksUri``, else the issuer's OpenID
    discovery document (for an http(s) issuer); None for inline ``jwks``."""
    if rule.jwks:
        return None
    if rule.jwksUri:
        return rule.jwksUri
    issuer = rule.issuer or ""
    if issuer.startswith(("https://", "http://")):
        return issuer.rstrip("/") + OIDC_DISCOVERY_PATH
    return None


def jwks_uris(policies: Sequence[RequestAuthentication]) -> list[str]:
    """Every URI the given RequestAuthentications need fetched."""
    out: list[str] = []
    for policy in policies:
        for rule in policy.spec.jwtRules:
            uri = jwks_uri(rule)
            if uri and uri not in out:
                out.append(uri)
    return out


def jwt_provider(rule: JWTRule, lookup: JwksLookup) -> jwt_pb2.JwtProvider:
    """One Istio ``jwtRules`` entry as an Envoy provider with inlined keys."""
    uri = jwks_uri(rule)
    keys = usable_jwks(rule.jwks if rule.jwks else (lookup(uri) if uri else None))
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer or "",
        audiences=list(rule.audiences),
        forward=bool(rule.forwardOriginalToken),
        from_headers=[
            jwt_pb2.JwtHeader(name=h.name or "", value_prefix=h.prefix or "")
            for h in rule.fromHeaders
        ],
        from_params=list(rule.fromParams),
        from_cookies=list(rule.fromCookies),
        payload_in_metadata=JWT_PAYLOAD_KEY,
        # Routes may match on claims (``@request.auth.claims``): choose the route again once
        # the payload is known, as Istio does.
        clear_route_cache=True,
        claim_to_headers=[
            jwt_pb2.JwtClaimToHeader(header_name=c.header, claim_name=c.claim)
            for c in rule.outputClaimToHeaders
            if c.header and c.claim
        ],
    )
    provider.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=keys or PLACEHOLDER_JWKS))
    if rule.outputPayloadToHeader:
        provider.forward_payload_header = rule.outputPayloadToHeader
    claims = [*DEFAULT_SPACE_DELIMITED_CLAIMS]
    claims += [c for c in rule.spaceDelimitedClaims if c not in claims]
    provider.normalize_payload_in_metadata.space_delimited_claims.extend(claims)
    return provider


def _providers(
    policies: Sequence[RequestAuthentication], lookup: JwksLookup
) -> tuple[dict[str, jwt_pb2.JwtProvider], dict[str, list[str]]]:
    """The providers of the rules of ``policies``, named after their issuer (``issuer#2``...
    when an issuer repeats; a rule equal to an earlier one is the same provider), and for each
    the RequestAuthentications (``ns/name``) that declared it."""
    providers: dict[str, jwt_pb2.JwtProvider] = {}
    owners: dict[str, list[str]] = {}
    for policy in policies:
        owner = f"{policy.namespace}/{policy.name}"
        for rule in policy.spec.jwtRules:
            provider = jwt_provider(rule, lookup)
            same = next((n for n, p in providers.items() if p == provider), None)
            if same is not None:
                if owner not in owners[same]:
                    owners[same].append(owner)
                continue
            name, n = provider.issuer or "jwt", 1
            while name in providers:
                n += 1
                name = f"{provider.issuer}#{n}"
            providers[name] = provider
            owners[name] = [owner]
    return providers, owners


def jwt_authn_config(
    policies: Sequence[RequestAuthentication],
    lookup: JwksLookup,
    failure_key: Callable[[int], str] | None = None,
) -> jwt_pb2.JwtAuthentication | None:
    """The merged ``jwt_authn`` config of the RequestAuthentications that apply (None if no
    rule): providers named after their issuer (``issuer#2``... when an issuer repeats).
    ``failure_key``: each provider writes its failure status in dynamic metadata under the key
    it gives for the provider's index (so a denial can name its RequestAuthentication)."""
    providers, _ = _providers(policies, lookup)
    if not providers:
        return None
    requirements = [jwt_pb2.JwtRequirement(provider_name=name) for name in providers]
    requirements.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    cfg = jwt_pb2.JwtAuthentication(
        rules=[
            jwt_pb2.RequirementRule(
                match=rc.RouteMatch(prefix="/"),
                requires=jwt_pb2.JwtRequirement(
                    requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements)
                ),
            )
        ],
        bypass_cors_preflight=True,
    )
    for i, (name, provider) in enumerate(providers.items()):
        cfg.providers[name].CopyFrom(provider)
        if failure_key is not None:
            cfg.providers[name].failed_status_in_metadata = failure_key(i)
    return cfg


def provider_owners(push: PushContext, proxy: Proxy) -> list[tuple[str, str, list[str]]]:
    """For each ``jwt_authn`` provider of ``proxy``, in the filter's order: its failure key
    (:func:`jwt_failure_key`), its issuer and the RequestAuthentications that declare it
    (``ns/name``)."""
    policies = applicable(push, proxy, push.request_authentications)
    providers, owners = _providers(policies, push.jwks)
    return [
        (jwt_failure_key(i), p.issuer, owners[name])
        for i, (name, p) in enumerate(providers.items())
    ]


def jwt_authn_filters(push: PushContext, proxy: Proxy) -> list[hcm_pb2.HttpFilter]:
    """``[jwt_authn]`` when a RequestAuthentication with rules applies to ``proxy``, else []."""

    def compute() -> list[hcm_pb2.HttpFilter]:
        policies = applicable(push, proxy, push.request_authentications)
        named = push.mesh_config.namePolicyInDenials
        cfg = jwt_authn_config(policies, push.jwks, jwt_failure_key if named else None)
        if cfg is None:
            return []
        return [hcm_pb2.HttpFilter(name=JWT_AUTHN_FILTER, typed_config=pack(cfg))]

    key = (
        "authn",
        proxy.namespace,
        tuple(sorted(proxy.labels.items())),
        push.mesh_config.namePolicyInDenials,
    )
    return push.memo(key, compute)
