"""`pilotfish wait --for=synced` and `apply --wait` against a real control plane and real
Envoys: return once every proxy ACKed; name a proxy that NACKed, with Envoy's error."""

from __future__ import annotations

import json

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

# A route Envoy refuses (as Istio, validation accepts it): the regex's RE2 program is larger
# than the limit Envoy's runtime sets (re2.max_program_size.error_level).
REJECTED = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {regex: "/%s"}}]
    route:
    - destination: {host: reviews}
""" % ("[a-z0-9]{1000}" * 30)


def test_apply_wait_returns_when_every_proxy_acked_and_names_a_nack(mesh: Mesh) -> None:
    mesh.apply(REVIEWS_SERVICE)
    mesh.add("reviews-v1", {"app": "reviews", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "reviews reachable")

    res = mesh.cp.cli("apply", "-f", "-", "--wait", "--timeout", "20s", input=TIMEOUT, check=True)
    assert "virtualservice.networking.istio.io/reviews created" in res.stdout
    assert "acknowledged by 2 of 2 proxies" in res.stdout
    # Right away, without waiting: the route is in the Envoy.
    routes = mesh.cp.cli("proxy-config", "route", "productpage.default", "-o", "json").stdout
    assert '"timeout": "3s"' in routes

    res = mesh.cp.cli("wait", "--for=synced", "--timeout", "10s", check=True)
    assert "acknowledged by 2 of 2 proxies" in res.stdout
    # -f: the revision that stored the file's objects (its VirtualService's resourceVersion)
    stored = mesh.cp.cli("get", "virtualservice", "reviews", "-o", "json", check=True).stdout
    rv = json.loads(stored)["metadata"]["resourceVersion"]
    res = mesh.cp.cli("wait", "--for=synced", "-f", "-", "--timeout", "10s", input=TIMEOUT,
                      check=True)  # fmt: skip
    assert res.stdout.startswith(f"revision {rv} acknowledged by 2 of 2 proxies"), res.stdout
    unstored = TIMEOUT.replace("name: reviews}", "name: ratings}")
    res = mesh.cp.cli("wait", "--for=synced", "-f", "-", "--timeout", "1s", input=unstored)
    assert res.returncode == 1
    assert "error: VirtualService default/ratings: not stored (apply it first)" in res.stderr

    res = mesh.cp.cli("apply", "-f", "-", "--wait", "--timeout", "20s", input=REJECTED)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "NACKED: productpage.default: RDS rejected:" in res.stderr
    assert "program size" in res.stderr
    assert "NACKED: reviews-v1.default: RDS rejected:" in res.stderr  # it routes to reviews too
    assert "0 of 2 proxies acknowledged it, 2 rejected it, 0 did not answer" in res.stderr
    # the file's revision is the rejected one: waiting for it names the NACKs too
    res = mesh.cp.cli("wait", "--for=synced", "-f", "-", "--timeout", "10s", input=REJECTED)
    assert res.returncode == 1 and "NACKED: productpage.default: RDS rejected:" in res.stderr

    later = mesh.cp.cli("wait", "--for=synced", "--revision", "100000", "--timeout", "1s")
    assert later.returncode == 1
    assert "NO ANSWER: reviews-v1.default: has not received revision 100000" in later.stderr
