"""Denials that name their policy (mesh config ``namePolicyInDenials``) on real traffic: off
by default; on, a DENY rule, an ALLOW policy that matched nothing and a rejected token each
answer with the policy's name, in the body and the ``x-pilotfish-denied-by`` header."""

from __future__ import annotations

import pytest

from tests.integration.authz.conftest import AuthzMesh, Policies, settled
from tests.integration.authz.jwt_issuer import Issuer

pytestmark = pytest.mark.integration

NAMED = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: named-denials, namespace: istio-system}
spec:
  meshConfig: {namePolicyInDenials: true}
"""

POLICIES = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: DENY
  rules:
  - to: [{operation: {paths: ["/api/admin*"]}}]
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-api, namespace: default}
spec:
  selector: {matchLabels: {app: backend}}
  action: ALLOW
  rules: [{to: [{operation: {paths: ["/api/*"]}}]}]
"""


def _request_authentication(issuer: Issuer) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt-example, namespace: default}}
spec:
  selector: {{matchLabels: {{app: backend}}}}
  jwtRules:
  - issuer: {issuer.issuer}
    jwks: '{issuer.jwks()}'
"""


def _answers(am: AuthzMesh, cases: list[tuple[str, dict[str, str]]]) -> list[tuple[int, str, str]]:
    out = []
    for path, headers in cases:
        r = am.client.request(am.host, path, headers=headers)
        out.append((r.status_code, r.text, r.headers.get("x-pilotfish-denied-by", "")))
    return out


def test_denials_name_the_policy_and_rule_only_when_the_mesh_asks(
    authz_mesh: AuthzMesh, policies: Policies
) -> None:
    issuer = Issuer()
    policies.apply(POLICIES + "---" + _request_authentication(issuer))
    forged = {"authorization": f"Bearer {issuer.forged()}"}
    cases = [
        ("/api/items", {}),
        ("/api/admin/users", {}),
        ("/api/items", {"x-block": "yes"}),
        ("/other", {}),
        ("/api/items", forged),
        ("/api/items", {"authorization": f"Bearer {Issuer(issuer='https://other').token()}"}),
    ]
    plain = "RBAC: access denied"
    settled(
        lambda: _answers(authz_mesh, cases[1:]),
        [
            (403, plain, ""),
            (403, plain, ""),
            (403, plain, ""),
            (401, "Jwt verification fails", ""),
            (401, "Jwt issuer is not configured", ""),
        ],
        "policies in force, denials unnamed (the default)",
    )
    assert _answers(authz_mesh, cases[:1])[0][0] == 200

    policies.apply(NAMED)
    rule0 = "default/deny-admin (rule 0)"
    rule1 = "default/deny-admin (rule 1)"
    allow = "no ALLOW policy matched (default/allow-api)"
    jwt = f"RequestAuthentication default/jwt-example (issuer {issuer.issuer})"
    unknown = "no RequestAuthentication declares the token's issuer (default/jwt-example)"
    expected = [
        (403, f"RBAC: access denied by {rule0}", rule0),
        (403, f"RBAC: access denied by {rule1}", rule1),
        (403, f"RBAC: access denied: {allow}", allow),
        (401, f"Jwt verification fails: {jwt}", jwt),
        (401, f"Jwt issuer is not configured: {unknown}", unknown),
    ]
    settled(lambda: _answers(authz_mesh, cases[1:]), expected, "denials named")
    assert _answers(authz_mesh, cases[:1])[0][0] == 200  # allowed traffic is untouched
