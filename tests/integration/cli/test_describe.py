"""`pilotfish x describe pod` against a real control plane and real Envoys."""

from __future__ import annotations

from tests.integration.harness import Mesh

CONFIG = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: ["*"]
  gateways: [bookinfo-gateway]
  http:
  - match: [{uri: {prefix: /reviews}}]
    route:
    - destination: {host: reviews, port: {number: 9080}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer}
spec:
  selector: {matchLabels: {app: reviews}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/default]}}]
"""


def test_describe_pod_names_what_applies_with_warnings(mesh: Mesh) -> None:
    mesh.apply(CONFIG)
    mesh.add("reviews-v1", {"app": "reviews", "version": "v1"}, mtls=True)
    out = mesh.cp.cli("x", "describe", "pod", "reviews-v1.default", check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "Pod: reviews-v1"
    assert "Service: reviews" in lines
    assert "   Port: http 9080/HTTP targets pod port 9080" in lines
    assert 'DestinationRule: reviews.default for "reviews"' in lines
    assert "   Matching subsets: v1" in lines
    assert "      (Non-matching subsets v2)" in lines
    assert "   Traffic Policy TLS Mode: ISTIO_MUTUAL" in lines
    assert "VirtualService: reviews.default" in lines
    assert any("WARNING: No destinations match pod subsets" in ln for ln in lines)
    assert "Exposed on Ingress Gateway default/bookinfo-gateway" in lines
    assert "   WARNING: Gateway default/bookinfo-gateway does not exist" in lines
    assert "   Workload mTLS mode: STRICT" in lines
    assert "   default.istio-system" in lines
    assert "   ALLOW default/reviews-viewer (1 rule(s))" in lines

    missing = mesh.cp.cli("x", "describe", "pod", "nobody", "-n", "default")
    assert missing.returncode != 0 and '"nobody"' in missing.stderr
