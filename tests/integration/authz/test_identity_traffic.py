"""AuthorizationPolicy by workload identity on real mTLS traffic: the seeds' allow-frontend
(principal + GET/POST on /api/*) and the namespace isolation recipe (STRICT mTLS, deny all,
allow the same namespace). Sidecars get certificates from the control plane's CA."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conftest import _free_port
from tests.integration.authz.conftest import settled
from tests.integration.harness import Mesh, Sidecar, start_control_plane

pytestmark = pytest.mark.integration

SETUP = """
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec:
  selector: {app: backend}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: team-a}
spec:
  selector: {app: api}
  ports: [{name: http, port: 9080}]
"""


@dataclass
class IdentityMesh:
    mesh: Mesh
    backend: Sidecar  # default/backend, service account "backend"
    api: Sidecar  # team-a/api
    frontend: Sidecar  # default, service account "frontend"
    other: Sidecar  # default, service account "other"
    team_a: Sidecar  # team-a client
    team_b: Sidecar  # team-b client


@pytest.fixture(scope="module")
def idm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityMesh]:
    tmp = tmp_path_factory.mktemp("identity")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(SETUP)
        m = IdentityMesh(
            mesh,
            backend=mesh.add("backend", {"app": "backend"}, service_account="backend", mtls=True),
            api=mesh.add(
                "api", {"app": "api"}, namespace="team-a", service_account="api", mtls=True
            ),
            frontend=mesh.add(
                "frontend",
                {"app": "frontend"},
                app_port=None,
                service_account="frontend",
                mtls=True,
            ),
            other=mesh.add(
                "other", {"app": "other"}, app_port=None, service_account="other", mtls=True
            ),
            team_a=mesh.add(
                "client-a", {"app": "client"}, app_port=None, namespace="team-a", mtls=True
            ),
            team_b=mesh.add(
                "client-b", {"app": "client"}, app_port=None, namespace="team-b", mtls=True
            ),
        )
        clients = (m.frontend, m.other, m.team_a, m.team_b)
        hosts = ("backend.default:9080", "api.team-a:9080")
        settled(
            lambda: [c.request(h).status_code for c in clients for h in hosts],
            [200] * len(clients) * len(hosts),
            "every client reaches both services",
        )
        yield m
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def plain_status(server: Sidecar, path: str = "/") -> int:
    """A plaintext request straight to the server's inbound port (a caller without a
    sidecar): its status, or 0 when the connection is refused."""
    try:
        return httpx.get(f"http://{server.ip}:{server.inbound_port}{path}", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_allow_frontend_seed_by_principal_method_and_path(idm: IdentityMesh) -> None:
    mesh = idm.mesh
    seed = "samples/tutorials/authorization-allow-frontend.yaml"  # app: backend, sa frontend
    host = "backend.default:9080"

    def observe() -> list[int]:
        return [
            idm.frontend.request(host, "/api/items").status_code,
            idm.frontend.request(host, "/api/items", method="POST").status_code,
            idm.frontend.request(host, "/api/items", method="DELETE").status_code,
            idm.frontend.request(host, "/admin").status_code,
            idm.other.request(host, "/api/items").status_code,
            idm.team_a.request(host, "/api/items").status_code,
            # A caller without a sidecar has no identity: denied even on PERMISSIVE.
            plain_status(idm.backend, "/api/items"),
        ]

    res = mesh.cp.cli("apply", "-f", seed)
    assert res.returncode == 0, res.stderr
    try:
        settled(observe, [200, 200, 403, 403, 403, 403, 403], "allow-frontend in force")
        r = idm.other.request(host, "/api/items")
        assert (r.status_code, r.text) == (403, "RBAC: access denied")
        # The app sees who called.
        seen = idm.frontend.request(host, "/api/items").json()["headers"]
        assert (
            "URI=spiffe://cluster.local/ns/default/sa/frontend" in seen["x-forwarded-client-cert"]
        )
    finally:
        mesh.cp.cli("delete", "-f", seed, "--ignore-not-found")
    settled(observe, [200, 200, 501, 200, 200, 200, 200], "allow-frontend removed")


NAMESPACE_ISOLATION = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: team-a}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: team-a}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-same-namespace, namespace: team-a}
spec:
  action: ALLOW
  rules:
  - from:
    - source:
        namespaces: ["team-a"]
"""

ALLOW_TEAM_B = """
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: allow-frontend, namespace: team-a}
spec:
  rules:
  - from:
    - source:
        namespaces: ["team-b"]
"""


def test_namespace_isolation_recipe(idm: IdentityMesh) -> None:
    mesh = idm.mesh

    def observe() -> list[int]:
        return [
            idm.team_a.request("api.team-a:9080").status_code,
            idm.team_b.request("api.team-a:9080").status_code,
            idm.frontend.request("api.team-a:9080").status_code,
            plain_status(idm.api),  # STRICT: a plaintext caller is refused outright
            idm.team_b.request("backend.default:9080").status_code,  # other namespaces: open
        ]

    mesh.apply(NAMESPACE_ISOLATION)
    try:
        settled(observe, [200, 403, 403, 0, 200], "isolation in force")
        r = idm.team_b.request("api.team-a:9080")
        assert (r.status_code, r.text) == (403, "RBAC: access denied")
        # The seeds' allow-frontend variant: allow one other namespace explicitly.
        mesh.apply(ALLOW_TEAM_B)
        settled(observe, [200, 200, 403, 0, 200], "team-b allowed")
    finally:
        mesh.cp.cli("delete", "-f", "-", "--ignore-not-found", input=NAMESPACE_ISOLATION)
        mesh.cp.cli("delete", "-f", "-", "--ignore-not-found", input=ALLOW_TEAM_B)
    settled(observe, [200, 200, 200, 200, 200], "isolation removed")
