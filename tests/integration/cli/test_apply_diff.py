"""`pilotfish apply --dry-run=server --diff` against a real control plane and real Envoys: the
control plane shows, per proxy the change reaches, the diff of its Envoy config, and stores
nothing (the Envoys keep running what they had)."""

from __future__ import annotations

from tests.integration.harness import REVIEWS_SERVICE, Mesh, eventually

TIMEOUT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: 3s
    route:
    - destination: {host: reviews}
"""

DENY_REVIEWS = """
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete}
spec:
  selector: {matchLabels: {app: reviews}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"""


def test_server_dry_run_diff_shows_each_reached_proxy_and_stores_nothing(mesh: Mesh) -> None:
    mesh.apply(REVIEWS_SERVICE)
    mesh.add("reviews-v1", {"app": "reviews", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "reviews reachable")
    before = mesh.cp.revision()

    res = mesh.cp.cli("apply", "-f", "-", "--dry-run=server", "--diff", input=TIMEOUT, check=True)
    out = res.stdout
    assert "virtualservice.networking.istio.io/reviews created (server dry run)" in out
    # A mesh VirtualService reaches the routes of every sidecar of its namespace.
    assert "--- productpage.default routes (now)" in out
    assert "+++ productpage.default routes (after the change)" in out
    added = [line for line in out.splitlines() if line.startswith("+") and '"timeout"' in line]
    assert any('"3s"' in line for line in added), out
    assert "2 proxies would change: productpage.default, reviews-v1.default" in out
    assert "clusters (now)" not in out and "listeners (now)" not in out  # routes only
    # Nothing stored, nothing pushed.
    assert mesh.cp.revision() == before
    routes = mesh.cp.cli("proxy-config", "route", "productpage.default", "-o", "json").stdout
    assert '"3s"' not in routes

    # A policy selecting reviews reaches only its listeners.
    res = mesh.cp.cli("apply", "-f", "-", "--dry-run=server", "--diff", input=DENY_REVIEWS)
    assert res.returncode == 0, res.stderr
    assert "--- reviews-v1.default listeners (now)" in res.stdout
    assert "productpage.default" not in res.stdout
    assert "1 proxy would change: reviews-v1.default" in res.stdout
    assert any(
        line.startswith("+") and "ns[default]-policy[deny-delete]-rule[0]" in line
        for line in res.stdout.splitlines()
    ), res.stdout
    assert mesh.cp.revision() == before

    # Applying what is already stored changes no proxy.
    mesh.apply(TIMEOUT)
    res = mesh.cp.cli("apply", "-f", "-", "--dry-run=server", "--diff", input=TIMEOUT, check=True)
    assert "unchanged (server dry run)" in res.stdout
    assert "0 proxies would change" in res.stdout
