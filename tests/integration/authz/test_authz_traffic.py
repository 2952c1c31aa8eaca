"""AuthorizationPolicy on real traffic: a client sidecar calls ``backend`` through its sidecar
(explicit mode on loopback) and the backend's inbound RBAC decides, as the seeds describe."""

from __future__ import annotations

import pytest

from tests.integration.authz.conftest import AuthzMesh, Policies, statuses
from tests.integration.harness import eventually

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
    eventually(lambda: authz_mesh.get()[0] == 403, what="deny-all in force")
    for method, path in [("GET", "/"), ("POST", "/api/x"), ("GET", "/anything?q=1")]:
        status, body = authz_mesh.get(path, method)
        assert (status, body) == (403, "RBAC: access denied")


def test_allow_get_and_post_on_api_only(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(ALLOW_API)
    eventually(lambda: authz_mesh.get("/")[0] == 403, what="allow-api in force")
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
    assert statuses(authz_mesh, cases) == [200, 200, 200, 403, 403, 403, 403, 403]
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
    eventually(lambda: authz_mesh.get("/api/admin")[0] == 403, what="deny-admin in force")
    assert statuses(authz_mesh, [("GET", "/api/admin/users"), ("GET", "/api/users")]) == [403, 200]
    assert authz_mesh.get("/api/users", **{"x-block": "yes"})[0] == 403
    assert authz_mesh.get("/api/users", **{"x-block": "no"})[0] == 200


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
    eventually(lambda: authz_mesh.get("/x", "POST")[0] == 403, what="deny-post in force")
    cases = [("POST", "/x"), ("POST", "/public/form"), ("GET", "/x"), ("GET", "/public/a")]
    assert statuses(authz_mesh, cases) == [403, 200, 200, 200]


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
    eventually(lambda: authz_mesh.get("/")[0] == 403, what="templates in force")
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
    assert statuses(authz_mesh, cases) == [200, 200, 403, 403, 403, 200, 200, 403]


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
    eventually(lambda: authz_mesh.get()[0] == 403, what="by-header in force")

    def status(**headers: str) -> int:
        return authz_mesh.get("/", **headers)[0]

    assert status(**{"x-team": "blue", "x-token": "t"}) == 200
    assert status(**{"x-team": "green", "x-token": "t"}) == 200
    assert status(**{"x-team": "greedy", "x-token": "t"}) == 403
    assert status(**{"x-team": "red", "x-token": "t"}) == 403
    assert status(**{"x-team": "blue"}) == 403
    assert status() == 403


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
    eventually(lambda: authz_mesh.get("/private")[0] == 403, what="by-port-host in force")
    assert authz_mesh.get("/ok")[0] == 200
    authz_mesh.host = "backend.default.svc.cluster.local:9080"
    try:
        assert authz_mesh.get("/ok")[0] == 200
        authz_mesh.host = "backend.default:9080"
        assert authz_mesh.get("/ok")[0] == 403
    finally:
        authz_mesh.host = "backend:9080"


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
    eventually(lambda: authz_mesh.get("/marker")[0] == 403, what="mesh-wide policy in force")
    assert authz_mesh.get("/")[0] == 200
