"""AuthorizationPolicy ``action: CUSTOM`` on real traffic, as Istio's "External
Authorization" task: the mesh config declares an ``envoyExtAuthzHttp`` provider (a small
authorizer app in the mesh that allows requests carrying ``x-ext-authz: allow``), a CUSTOM
policy on ``backend`` sends the requests its rules select to it; CUSTOM is evaluated before
DENY and ALLOW; ``failOpen`` and ``statusOnError`` decide what happens when the authorizer
cannot be reached."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.api import kinds
from tests.integration.authz.conftest import AuthzMesh, Policies, settled
from tests.integration.harness import eventually

pytestmark = pytest.mark.integration

PROVIDER_APP = str(Path(__file__).parent.parent / "ext_authz_provider.py")

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: ext-authz, namespace: default}
spec:
  selector: {app: ext-authz}
  ports: [{name: http, port: 8000}]
---
apiVersion: v1
kind: Service
metadata: {name: nowhere, namespace: default}
spec:
  selector: {app: nowhere}
  ports: [{name: http, port: 8000}]
"""


def mesh_config(service: str = "ext-authz.default.svc.cluster.local", extra: str = "") -> str:
    return f"""
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {{name: ext-authz, namespace: istio-system}}
spec:
  meshConfig:
    extensionProviders:
    - name: sample-ext-authz-http
      envoyExtAuthzHttp:
        service: {service}
        port: 8000
        includeRequestHeadersInCheck: [x-ext-authz]
        headersToUpstreamOnAllow: [x-ext-authz-check-result]
        headersToDownstreamOnDeny: [x-ext-authz-check-result]{extra}
"""


CUSTOM = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: default}
spec:
  selector:
    matchLabels: {app: backend}
  action: CUSTOM
  provider: {name: sample-ext-authz-http}
  rules:
  - to: [{operation: {paths: ["/headers", "/protected/*"]}}]
"""

DENY_BLOCKED = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-blocked, namespace: default}
spec:
  selector:
    matchLabels: {app: backend}
  action: DENY
  rules:
  - when: [{key: "request.headers[x-block]", values: ["yes"]}]
"""


def explained(am: AuthzMesh, path: str, **headers: str) -> dict[str, Any]:
    """The explainer's verdict for ``GET path`` from the client (``pilotfish x explain``'s API),
    without sending the request."""
    cp = am.mesh.cp
    res = httpx.post(
        cp.url + kinds.proxy_explain_path("default", am.client.name),
        headers={"Authorization": f"Bearer {cp.token}"},
        json={"method": "GET", "url": f"http://{am.host}{path}", "headers": headers},
        timeout=30,
    )
    assert res.status_code == 200, res.text
    verdict: dict[str, Any] = res.json()["verdict"]
    return verdict


def agrees(am: AuthzMesh, path: str, **headers: str) -> tuple[Any, ...]:
    """The explainer's (allowed, status, policy) next to what real traffic got, for a request
    whose fate config decides (the authorizer is not asked, or cannot be reached)."""
    v = explained(am, path, **headers)
    status, _ = am.get(path, **headers)
    want = (v["allowed"], v["status"] or 200)
    got = (status < 400, status)
    assert want == got, (path, headers, v, status)
    return (*want, v["policy"])


def test_custom_action_calls_the_external_authorizer(
    authz_mesh: AuthzMesh, policies: Policies
) -> None:
    mesh = authz_mesh.mesh
    policies.apply(SERVICE)
    provider = mesh.add(
        "ext-authz",
        {"app": "ext-authz"},
        app_port=8000,
        app_command=(sys.executable, PROVIDER_APP, "--host", "{ip}", "--port", "{port}"),
    )
    try:
        _check(authz_mesh, policies)
    finally:
        provider.stop()


def _check(authz_mesh: AuthzMesh, policies: Policies) -> None:
    policies.apply(mesh_config())
    policies.apply(CUSTOM + "---" + DENY_BLOCKED)
    allow = {"x-ext-authz": "allow"}

    settled(
        lambda: [
            authz_mesh.get("/headers")[0],
            authz_mesh.get("/headers", **allow)[0],
            authz_mesh.get("/public")[0],
        ],
        [403, 200, 200],
        "the CUSTOM policy in force",
    )
    # Denied by the authorizer: its status, its body, the header it lets through to the client.
    denied = authz_mesh.client.request(authz_mesh.host, "/protected/x")
    assert denied.status_code == 403
    assert denied.text.startswith("denied by ext_authz")
    assert denied.headers["x-ext-authz-check-result"] == "denied"
    # Allowed: the app sees the request, with the header the authorizer added upstream.
    ok = authz_mesh.client.request(authz_mesh.host, "/protected/x", headers=allow)
    assert ok.status_code == 200
    assert ok.json()["headers"]["x-ext-authz-check-result"] == "allowed"
    # Paths the rules do not select are never checked.
    assert authz_mesh.get("/public")[0] == 200

    # The explainer against the same traffic: a path no CUSTOM rule selects is not sent to
    # the authorizer (allowed, or denied by the DENY policy after it, as real traffic was);
    # one a rule selects goes to the named provider, whose answer the explainer cannot know
    # (real traffic did reach the authorizer: its answer came back).
    assert agrees(authz_mesh, "/public") == (True, 200, None)
    assert agrees(authz_mesh, "/public", **{"x-block": "yes"}) == (
        False,
        403,
        "default/deny-blocked",
    )
    v = explained(authz_mesh, "/protected/x")
    assert (v["allowed"], v["policy"], v["rule"]) == (None, "default/ext-authz", 0), v
    assert "sample-ext-authz-http" in v["reason"] and "not known offline" in v["reason"]
    assert (
        authz_mesh.client.request(authz_mesh.host, "/protected/x").headers[
            "x-ext-authz-check-result"
        ]
        == "denied"
    )

    # CUSTOM before DENY: allowed by the authorizer, still denied by the DENY policy (RBAC);
    # denied by the authorizer: its answer, the DENY policy is not reached.
    assert authz_mesh.get("/headers", **allow, **{"x-block": "yes"}) == (403, "RBAC: access denied")
    status, body = authz_mesh.get("/headers", **{"x-block": "yes"})
    assert (status, body.startswith("denied by ext_authz")) == (403, True)

    # The authorizer unreachable (a service without endpoints): statusOnError, then failOpen.
    policies.apply(
        mesh_config("nowhere.default.svc.cluster.local", "\n        statusOnError: '503'")
    )
    eventually(lambda: authz_mesh.get("/headers", **allow)[0] == 503, 30, "statusOnError")
    assert authz_mesh.get("/public")[0] == 200
    # The provider down decides offline too: its statusOnError, then failOpen, as real traffic.
    assert agrees(authz_mesh, "/headers", **allow) == (False, 503, "default/ext-authz")
    assert agrees(authz_mesh, "/public") == (True, 200, None)
    policies.apply(mesh_config("nowhere.default.svc.cluster.local", "\n        failOpen: true"))
    eventually(lambda: authz_mesh.get("/headers")[0] == 200, 30, "failOpen")
    assert agrees(authz_mesh, "/headers")[:2] == (True, 200)

    # A provider the mesh config does not define: the CUSTOM policy fails closed.
    policies.apply(CUSTOM.replace("sample-ext-authz-http", "undefined") + "---" + DENY_BLOCKED)
    eventually(lambda: authz_mesh.get("/public")[0] == 403, 30, "fail closed")
    assert agrees(authz_mesh, "/public")[:2] == (False, 403)


# Next to this file's folder: ``tests/integration`` holds an ``xds`` test package that would
# shadow xds-protos' ``xds`` in the provider's process.
GRPC_PROVIDER_APP = str(Path(__file__).with_name("ext_authz_grpc_provider.py"))

GRPC_PROVIDER = """
apiVersion: v1
kind: Service
metadata: {name: ext-authz-grpc, namespace: default}
spec:
  selector: {app: ext-authz-grpc}
  ports: [{name: grpc, port: 9000}]
---
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: ext-authz, namespace: istio-system}
spec:
  meshConfig:
    extensionProviders:
    - name: sample-ext-authz-grpc
      envoyExtAuthzGrpc:
        service: ext-authz-grpc.default.svc.cluster.local
        port: 9000
"""


def test_custom_action_with_a_grpc_authorizer_on_http(
    authz_mesh: AuthzMesh, policies: Policies
) -> None:
    """Istio's task with its ``envoyExtAuthzGrpc`` provider: Envoy's ext_authz filter asks a
    gRPC authorizer (``envoy.service.auth.v3.Authorization/Check``) about each HTTP request
    the CUSTOM policy selects; its denial (status, body) reaches the client, the header it
    adds on allow reaches the app, and paths the rules do not select are never checked."""
    provider = authz_mesh.mesh.add(
        "ext-authz-grpc",
        {"app": "ext-authz-grpc"},
        app_port=9000,
        app_command=(sys.executable, GRPC_PROVIDER_APP, "--host", "{ip}", "--port", "{port}"),
    )
    try:
        policies.apply(GRPC_PROVIDER)
        policies.apply(CUSTOM.replace("sample-ext-authz-http", "sample-ext-authz-grpc"))
        allow = {"x-ext-authz": "allow"}
        settled(
            lambda: [
                authz_mesh.get("/headers")[0],
                authz_mesh.get("/headers", **allow)[0],
                authz_mesh.get("/public")[0],
            ],
            [403, 200, 200],
            "the CUSTOM policy with the gRPC authorizer in force",
        )
        assert authz_mesh.get("/protected/x") == (403, "denied by the gRPC ext_authz")
        ok = authz_mesh.client.request(authz_mesh.host, "/protected/x", headers=allow)
        assert ok.status_code == 200
        assert ok.json()["headers"]["x-ext-authz-check-result"] == "allowed"
    finally:
        provider.stop()
