"""RequestAuthentication and JWT-based AuthorizationPolicy on real traffic, following the seeds:
``jwt-auth`` (keys from a ``jwksUri`` the control plane fetches) plus ``require-jwt`` (group
``admin``); and an inline ``jwks`` rule with custom token locations and claim headers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _free_port
from tests.integration.authz.conftest import AuthzMesh, Policies, settled
from tests.integration.authz.jwt_issuer import Issuer, serve_jwks

pytestmark = pytest.mark.integration

TUTORIALS = Path(__file__).resolve().parents[3] / "samples" / "tutorials"


def seed(name: str, jwks_uri: str = "") -> str:
    """A seed tutorial YAML, selecting this test's ``backend`` workload (and serving the keys
    from the loopback issuer instead of auth.example.com)."""
    text = (TUTORIALS / name).read_text().replace("app: my-service", "app: backend")
    if jwks_uri:
        text = text.replace("https://auth.example.com/.well-known/jwks.json", jwks_uri)
    return text


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def jwks_url(issuer: Issuer) -> Iterator[str]:
    with serve_jwks(issuer, _free_port()) as url:
        yield url


MALFORMED = "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_require_jwt_seed_with_keys_fetched_by_the_control_plane(
    authz_mesh: AuthzMesh, policies: Policies, issuer: Issuer, jwks_url: str
) -> None:
    policies.apply(seed("request-authentication-jwt.yaml", jwks_url))
    policies.apply(seed("authorization-require-jwt.yaml"))
    admin = issuer.token(aud="my-service", groups=["admin", "dev"])

    other = Issuer(issuer="https://evil.example.com", key=issuer.key)
    cases = [
        admin,
        issuer.token(aud="my-service", groups="admin"),  # a string claim works too
        # Valid tokens without the claim value, or without the claim: 403 from RBAC.
        issuer.token(aud="my-service", groups=["dev"]),
        issuer.token(aud="my-service"),
        # No token: jwt_authn lets it through, require-jwt's requestPrincipals deny it.
        None,
        # Tokens that fail verification: 401 from jwt_authn.
        issuer.forged(aud="my-service", groups=["admin"]),
        issuer.token(ttl=-600, aud="my-service", groups=["admin"]),
        other.token(aud="my-service", groups=["admin"]),
        "not-a-jwt",
        # Envoy answers a token for another audience with 403 from jwt_authn itself.
        issuer.token(aud="someone-else", groups=["admin"]),
    ]
    denied = (403, "RBAC: access denied")
    expected = [
        200, 200, denied, denied, denied,
        (401, "Jwt verification fails"), (401, "Jwt is expired"),
        (401, "Jwt issuer is not configured"), (401, MALFORMED),
        (403, "Audiences in Jwt are not allowed"),
    ]  # fmt: skip

    def observe() -> list[object]:
        out: list[object] = []
        for token in cases:
            status, body = authz_mesh.get("/", **(bearer(token) if token else {}))
            out.append(status if status == 200 else (status, body))
        return out

    # The control plane fetches the keys, then pushes them.
    settled(observe, expected, "keys fetched and pushed, require-jwt in force")
    # forwardOriginalToken: the app sees the token.
    r = authz_mesh.client.request(authz_mesh.host, "/", headers=bearer(admin))
    assert r.json()["headers"]["authorization"] == f"Bearer {admin}"


def test_request_principals_exact_and_negated(
    authz_mesh: AuthzMesh, policies: Policies, issuer: Issuer
) -> None:
    policies.apply(
        f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: inline, namespace: default}}
spec:
  jwtRules:
  - issuer: {issuer.issuer}
    jwks: '{issuer.jwks()}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: principals, namespace: default}}
spec:
  rules:
  - from:
    - source:
        requestPrincipals: ["{issuer.issuer}/alice", "{issuer.issuer}/bob*", "*/carol"]
        notRequestPrincipals: ["*/bobby"]
"""
    )
    subjects = ("alice", "bob", "bob2", "bobby", "carol", "dave", "alice2")
    settled(
        lambda: [authz_mesh.get("/", **bearer(issuer.token(sub=s)))[0] for s in subjects],
        [200, 200, 200, 403, 200, 403, 403],
        "principals in force",
    )


def test_inline_jwks_token_locations_and_output_headers(
    authz_mesh: AuthzMesh, policies: Policies, issuer: Issuer
) -> None:
    policies.apply(
        f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: inline, namespace: default}}
spec:
  selector:
    matchLabels: {{app: backend}}
  jwtRules:
  - issuer: {issuer.issuer}
    jwks: '{issuer.jwks()}'
    fromHeaders:
    - {{name: x-auth, prefix: "Token "}}
    fromParams: [jwt]
    outputClaimToHeaders:
    - {{header: x-jwt-sub, claim: sub}}
    - {{header: x-jwt-tenant, claim: tenant}}
    outputPayloadToHeader: x-jwt-payload
"""
    )
    token = issuer.token(sub="alice", tenant="acme")
    settled(
        lambda: [
            authz_mesh.get("/", **{"x-auth": "Token garbage"})[0],
            authz_mesh.get("/")[0],  # no token and no policy requiring one: allowed
            # The query parameter location works too.
            authz_mesh.get(f"/?jwt={token}")[0],
            authz_mesh.get(f"/?jwt={issuer.forged()}")[0],
            # The Authorization header is not a location of this rule.
            authz_mesh.get("/", **bearer(issuer.forged()))[0],
        ],
        [401, 200, 200, 401, 200],
        "jwt_authn in force",
    )
    r = authz_mesh.client.request(authz_mesh.host, "/", headers={"x-auth": f"Token {token}"})
    assert r.status_code == 200
    seen = r.json()["headers"]
    assert seen["x-jwt-sub"] == "alice"
    assert seen["x-jwt-tenant"] == "acme"
    payload = seen["x-jwt-payload"]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (decoded["iss"], decoded["sub"]) == (issuer.issuer, "alice")
    assert "x-auth" not in seen  # forwardOriginalToken unset: the token is removed
    # Claims spoofed by the caller are replaced by the verified ones.
    r = authz_mesh.client.request(
        authz_mesh.host, "/", headers={"x-auth": f"Token {token}", "x-jwt-sub": "root"}
    )
    assert r.json()["headers"]["x-jwt-sub"] == "alice"


BLOCK_LOOPBACK = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: jwks-guard, namespace: istio-system}
spec:
  values:
    pilot:
      env:
        BLOCKED_CIDRS_IN_JWKS_URIS: "10.0.0.0/8, 127.0.0.0/8"
"""


def test_blocked_cidrs_in_jwks_uris_keeps_keys_from_a_blocked_address_out(
    authz_mesh: AuthzMesh, policies: Policies, issuer: Issuer, jwks_url: str
) -> None:
    """istiod's setting, applied as Istio users set it: the issuer on loopback is refused,
    the keys fetched before are dropped and every token fails (fail closed); taking the
    setting away fetches the keys again."""
    policies.apply(seed("request-authentication-jwt.yaml", jwks_url))
    token = bearer(issuer.token(aud="my-service", groups=["admin"]))

    seen: list[object] = []

    def observe() -> object:
        status, body = authz_mesh.get("/", **token)
        seen.append(status if status == 200 else (status, body))
        return seen[-1]

    settled(observe, 200, "keys fetched from the loopback issuer")
    policies.apply(BLOCK_LOOPBACK)
    try:
        # The key set that verifies no token has no key of the token's kid.
        no_key = (401, "Jwks doesn't have key to match kid or alg from Jwt")
        settled(observe, no_key, "keys from 127.0.0.1 dropped")
    except AssertionError as e:
        raise AssertionError(f"{e}; the token got {seen[-1]!r}") from None
    authz_mesh.mesh.cp.cli("delete", "-f", "-", input=BLOCK_LOOPBACK, check=True)
    settled(observe, 200, "keys fetched again once the setting is gone")
