"""VirtualService delegation on real traffic: a root VirtualService in ``default`` hands its
``/api`` routes to a delegate owned by another namespace; matches merge as Istio merges them,
a conflicting delegate rule is left out, and the delegate's ``exportTo`` decides whether the
root may use it at all."""

from __future__ import annotations

from tests.integration.harness import REVIEWS_SERVICE, Mesh, eventually

TEAM = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n"

RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""

ROOT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: api
    match: [{uri: {prefix: /api}}]
    delegate: {name: reviews-api, namespace: team}
  - route: [{destination: {host: reviews, subset: v3}}]
"""


def delegate(export_to: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews-api, namespace: team}}
spec:
  exportTo: {export_to}
  http:
  - name: v2
    match: [{{uri: {{prefix: /api/v2}}}}]
    route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: v2}}}}]
  - name: outside
    match: [{{uri: {{prefix: /other}}}}]
    route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: v2}}}}]
  - name: rest
    route: [{{destination: {{host: reviews.default.svc.cluster.local, subset: v1}}}}]
"""


def test_root_and_delegate_merge_on_real_traffic(mesh: Mesh) -> None:
    mesh.apply("\n---\n".join([TEAM, REVIEWS_SERVICE, RULE]))
    for v in ("v1", "v2", "v3"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)

    def version(path: str) -> str:
        r = client.request("reviews:9080", path)
        assert r.status_code == 200, (r.status_code, r.text)
        return str(r.json()["version"])

    mesh.apply("\n---\n".join([ROOT, delegate('["default"]')]))
    eventually(lambda: version("/api/v2/x") == "v2" and version("/api/x") == "v1", what="merge")
    assert {version("/api/v2/items") for _ in range(5)} == {"v2"}
    assert {version("/api/other") for _ in range(5)} == {"v1"}
    # /other is outside the root's /api: that delegate rule conflicts and is left out, so the
    # request falls to the root's own last rule.
    assert {version("/other") for _ in range(5)} == {"v3"}
    assert {version("/") for _ in range(5)} == {"v3"}

    # The delegate no longer exported to the root's namespace: the root's /api rule goes.
    mesh.apply(delegate('["."]'))
    eventually(lambda: version("/api/x") == "v3", what="the delegate hidden from the root")
    assert {version("/api/v2/x") for _ in range(5)} == {"v3"}

    # Exported again, with a changed rule: the change alone reaches the root's proxies.
    mesh.apply(delegate('["*"]').replace("subset: v1", "subset: v2"))
    eventually(lambda: version("/api/x") == "v2", what="the changed delegate")
