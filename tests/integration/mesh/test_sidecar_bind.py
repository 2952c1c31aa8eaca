"""A Sidecar egress listener with ``captureMode: NONE`` and ``bind``, on real traffic: the
sidecar opens a real HTTP listener on ``bind:port`` that the app sends its requests to (no
capture needed), routing the hosts that listener imports, as Istio's "bound" egress
listeners do; a TCP port forwards connections to the service the listener imports."""

from __future__ import annotations

import sys

import httpx

from tests.integration.harness import REVIEWS_SERVICE, Mesh, eventually
from tests.integration.tcp_echo import SCRIPT, echo

SERVICES = (
    REVIEWS_SERVICE
    + """
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
"""
)


def bound_sidecar(ip: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: bound, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: productpage}}}}
  egress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {ip}
    captureMode: NONE
    hosts: [./reviews.default.svc.cluster.local]
  - hosts: ["./*"]
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"""


def test_a_bound_egress_listener_serves_the_hosts_it_imports(mesh: Mesh) -> None:
    mesh.apply(SERVICES)
    mesh.add("reviews", {"app": "reviews", "version": "v1"})
    mesh.add("ratings", {"app": "ratings", "version": "v1"})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    mesh.apply(bound_sidecar(client.ip))
    bound = f"http://{client.ip}:9080/"

    def call(host: str) -> int:
        return httpx.get(bound, headers={"Host": host}, timeout=5).status_code

    # The bound listener appears on the client's own address and routes reviews ...
    eventually(lambda: call("reviews:9080") == 200, 30, "the bound egress listener")
    assert httpx.get(bound, headers={"Host": "reviews"}, timeout=5).json()["name"] == "reviews"
    # ... and only the hosts it imports: ratings is not on this listener (REGISTRY_ONLY:
    # Istio's 502).
    assert call("ratings:9080") == 502


TCP_SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: tcp-echo}
spec:
  selector: {app: tcp-echo}
  ports: [{name: tcp, port: 9000}]
"""


def test_a_bound_tcp_egress_listener_forwards_to_the_service_it_imports(mesh: Mesh) -> None:
    """A TCP egress port with ``captureMode: NONE``: the sidecar listens on ``bind:port``
    and forwards each connection to the service the listener imports there, its ``tcp``
    rules applied (here a VirtualService sending everything to v2)."""
    mesh.apply(TCP_SERVICE)
    for version, word in (("v1", "one"), ("v2", "two")):
        app = (
            sys.executable,
            str(SCRIPT),
            "--host",
            "{ip}",
            "--port",
            "{port}",
            "--prefix",
            word,
        )
        mesh.add(
            f"tcp-echo-{version}",
            {"app": "tcp-echo", "version": version},
            app_port=9000,
            app_command=app,
        )
    client = mesh.add("sleep", {"app": "sleep"}, app_port=None)
    addr = (client.ip, 9000)
    assert echo(addr) == ""  # nothing listens there before the Sidecar
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: bound-tcp, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: sleep}}}}
  egress:
  - port: {{number: 9000, protocol: TCP, name: tcp}}
    bind: {client.ip}
    captureMode: NONE
    hosts: [./tcp-echo.default.svc.cluster.local]
"""
    )
    eventually(lambda: echo(addr).endswith(" hello"), 30, "the bound TCP egress listener")
    mesh.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: tcp-echo}
spec:
  host: tcp-echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: [tcp-echo]
  tcp:
  - route: [{destination: {host: tcp-echo, subset: v2}}]
"""
    )
    eventually(lambda: all(echo(addr) == "two hello" for _ in range(5)), 30, "the tcp rule applied")
