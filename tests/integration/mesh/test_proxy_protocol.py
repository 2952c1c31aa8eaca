"""DestinationRule ``trafficPolicy.proxyProtocol``: the proxy starts each upstream connection
with a PROXY protocol header. A gateway forwards a TCP server to an external echo server (a
ServiceEntry); the echo server answers every line it reads, so the first answer shows what the
connection began with: the client's own line without the rule, the ``PROXY TCP4`` header (v1)
with it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.integration.harness import Mesh, eventually
from tests.integration.tcp_echo import SCRIPT, echo

pytestmark = pytest.mark.integration


def config(port: int) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext}}
spec:
  hosts: [echo.example]
  location: MESH_EXTERNAL
  ports: [{{number: 9000, name: tcp, protocol: TCP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 31400, name: tcp, protocol: TCP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: echo}}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp:
  - route:
    - destination: {{host: echo.example, port: {{number: 9000}}}}
"""


RULE = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo.example
  trafficPolicy:
    proxyProtocol: {version: V1}
"""


def test_proxy_protocol_sends_a_header_first(mesh: Mesh, free_port: Callable[[], int]) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", str(port)]
    )
    try:
        mesh.apply(config(port))
        gw = mesh.add(
            "istio-ingressgateway", {"istio": "ingressgateway"}, namespace="istio-system",
            proxy_type="router", gateway_ports=(31400,),
        )  # fmt: skip
        assert gw.gateway_ports is not None
        addr = (gw.ip, gw.gateway_ports[31400])
        eventually(lambda: echo(addr) == "one hello", 30, "the echo server through the gateway")
        mesh.apply(RULE)
        eventually(lambda: echo(addr).startswith("one PROXY TCP4 "), 30, "a PROXY v1 header")
        assert echo(addr).split()[:3] == ["one", "PROXY", "TCP4"]
    finally:
        server.terminate()
        server.wait(5)
