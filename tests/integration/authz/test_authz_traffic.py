"""AuthorizationPolicy on real traffic: a client sidecar calls ``backend`` through its sidecar
(explicit mode on loopback) and the backend's inbound RBAC decides, as the seeds describe."""

from __future__ import annotations

import pytest

from tests.integration.authz.conftest import AuthzMesh, Policies, settled, statuses

pytestmark = pytest.mark.integration

DENY_ALL = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: default}
spec: {}
"""

ALLOW_API = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-api, namespace: default}
spec:
  selector:
    matchLabels: {app: backend}
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET", "POST"]
        paths: ["/api/*"]
"""


def test_deny_all_answers_403_rbac_access_denied(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(DENY_ALL)
    cases = [("GET", "/"), ("POST", "/api/x"), ("GET", "/anything?q=1")]
    settled(
        lambda: [authz_mesh.get(path, method) for method, path in cases],
        [(403, "RBAC: access denied")] * len(cases),
        "deny-all in force",
    )


def test_allow_get_and_post_on_api_only(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(ALLOW_API)
    cases = [
        ("GET", "/api/items"),
        ("POST", "/api/items/1"),
        ("GET", "/api/"),
        ("GET", "/"),
        ("GET", "/apis"),
        ("GET", "/other/api/x"),
        ("DELETE", "/api/items"),
        ("PUT", "/api/items"),
    ]
    expected = [200, 200, 200, 403, 403, 403, 403, 403]
    settled(lambda: statuses(authz_mesh, cases), expected, "allow-api in force")
    # The app sees the allowed request as sent.
    r = authz_mesh.client.request(authz_mesh.host, "/api/items?x=1")
    assert r.json()["path"] == "/api/items?x=1"


def test_deny_takes_precedence_over_allow(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(
        ALLOW_API
        + """
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin, namespace: default}
spec:
  action: DENY
  rules:
  - to:
    - operation: {paths: ["/api/admin*"]}
  - when:
    - key: request.headers[x-block]
      values: ["yes"]
"""
    )

    def observe() -> list[int]:
        return [
            authz_mesh.get("/api/admin/users")[0],
            authz_mesh.get("/api/users")[0],
            authz_mesh.get("/api/users", **{"x-block": "yes"})[0],
            authz_mesh.get("/api/users", **{"x-block": "no"})[0],
            authz_mesh.get("/")[0],
        ]

    settled(observe, [403, 200, 403, 200, 403], "deny-admin in force")


def test_deny_policy_alone_allows_the_rest(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: default}
spec:
  selector:
    matchLabels: {app: backend}
  action: DENY
  rules:
  - to:
    - operation: {methods: ["POST"], notPaths: ["/public/*"]}
"""
    )
    cases = [("POST", "/x"), ("POST", "/public/form"), ("GET", "/x"), ("GET", "/public/a")]
    settled(lambda: statuses(authz_mesh, cases), [403, 200, 200, 200], "deny-post in force")


def test_path_templates(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: templates, namespace: default}
spec:
  rules:
  - to:
    - operation:
        paths: ["/api/{*}/items", "/files/{**}"]
"""
    )
    cases = [
        ("GET", "/api/v1/items"),
        ("GET", "/api/v2/items"),
        ("GET", "/api/v1/extra/items"),
        ("GET", "/api/items"),
        ("GET", "/api/v1/items/3"),
        ("GET", "/files/a"),
        ("GET", "/files/a/b/c.txt"),
        ("GET", "/filesx/a"),
    ]
    expected = [200, 200, 403, 403, 403, 200, 200, 403]
    settled(lambda: statuses(authz_mesh, cases), expected, "templates in force")


def test_header_when_conditions(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-header, namespace: default}
spec:
  rules:
  - when:
    - key: request.headers[x-team]
      values: ["blue", "gre*"]
      notValues: ["greedy"]
    - key: request.headers[x-token]
      values: ["*"]
"""
    )
    cases: list[dict[str, str]] = [
        {"x-team": "blue", "x-token": "t"},
        {"x-team": "green", "x-token": "t"},
        {"x-team": "greedy", "x-token": "t"},
        {"x-team": "red", "x-token": "t"},
        {"x-team": "blue"},
        {},
    ]
    settled(
        lambda: [authz_mesh.get("/", **headers)[0] for headers in cases],
        [200, 200, 403, 403, 403, 403],
        "by-header in force",
    )


def test_ports_hosts_and_audit(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-port-host, namespace: default}
spec:
  rules:
  - to:
    - operation:
        ports: ["9080"]
        hosts: ["backend", "backend:*", "*.svc.cluster.local:9080"]
        notPaths: ["/private"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: default}
spec:
  action: AUDIT
  rules: [{}]
"""
    )

    def observe() -> list[int]:
        client = authz_mesh.client
        return [
            client.request("backend:9080", "/private").status_code,
            client.request("backend:9080", "/ok").status_code,
            client.request("backend.default.svc.cluster.local:9080", "/ok").status_code,
            client.request("backend.default:9080", "/ok").status_code,
        ]

    settled(observe, [403, 200, 200, 403], "by-port-host in force")


def test_policy_for_other_workload_or_namespace_has_no_effect(
    authz_mesh: AuthzMesh, policies: Policies
) -> None:
    policies.apply(
        """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-app, namespace: default}
spec:
  selector:
    matchLabels: {app: reviews}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-ns, namespace: prod}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-marker, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["/marker"]}}]
"""
    )
    # The mesh-wide marker proves the new config reached the backend's sidecar.
    settled(
        lambda: [authz_mesh.get("/marker")[0], authz_mesh.get("/")[0]],
        [403, 200],
        "mesh-wide policy in force",
    )
