"""`pilotfish proxy-status POD` against a real control plane and a real Envoy: the config the
control plane would send against what the Envoy runs, as istioctl prints it."""

from __future__ import annotations

from pathlib import Path

from tests.integration.harness import REVIEWS_SERVICE, Mesh, eventually

TIMEOUT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - timeout: 7s
    route:
    - destination: {host: reviews}
"""


def test_synced_proxy_matches_and_a_stale_dump_shows_the_diff(mesh: Mesh, tmp_path: Path) -> None:
    mesh.apply(REVIEWS_SERVICE)
    mesh.add("reviews-v1", {"app": "reviews", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "reviews reachable")

    def matches() -> bool:
        out = mesh.cp.cli("proxy-status", "productpage.default", check=True).stdout
        return out.splitlines()[:2] == ["Clusters Match", "Listeners Match"] and (
            "Routes Match" in out
        )

    eventually(matches, 20, "the control plane's config and the Envoy's to match")
    old = tmp_path / "dump.json"
    old.write_text(mesh.cp.cli("proxy-config", "dump", "productpage.default", check=True).stdout)

    mesh.apply(TIMEOUT)
    eventually(matches, 20, "the new route to reach the Envoy")
    out = mesh.cp.cli("proxy-status", "productpage", "-n", "default", "-f", str(old)).stdout
    assert "Clusters Match" in out
    assert "--- Control Plane Routes\n+++ Envoy Routes\n@@" in out
    changed = {ln[0] + ln[1:].strip() for ln in out.splitlines() if ln[:1] in "-+"}
    assert '-"timeout": "7s"' in changed  # the control plane's side
    assert '+"timeout": "0s"' in changed  # the Envoy's, from before the change

    missing = mesh.cp.cli("proxy-status", "nobody.default")
    assert missing.returncode != 0 and "nobody.default" in missing.stderr
