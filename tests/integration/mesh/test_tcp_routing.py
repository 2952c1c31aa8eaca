"""TCP routing through a real ingress gateway Envoy, as Istio's "TCP Traffic Shifting" task:
``tcp-echo`` v1 and v2 (each reply names its version), a ``TCP`` Gateway server on 31400 and
the task's VirtualServices as written, moving the connections 100/0, 80/20, then 0/100.
"""

from __future__ import annotations

import collections
import signal
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import _free_port
from tests.integration.harness import Mesh, Sidecar, eventually, start_control_plane
from tests.integration.tcp_echo import SCRIPT, echo

pytestmark = pytest.mark.integration


# samples/tcp-echo/tcp-echo-services.yaml (the Service).
SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: tcp-echo
  labels:
    app: tcp-echo
    service: tcp-echo
spec:
  ports:
  - name: tcp
    port: 9000
  - name: tcp-other
    port: 9001
  # Port 9002 is omitted intentionally for testing the pass through filter chain.
  selector:
    app: tcp-echo
"""

# samples/tcp-echo/tcp-echo-all-v1.yaml
ALL_V1 = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tcp-echo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 31400
      name: tcp
      protocol: TCP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tcp-echo-destination
spec:
  host: tcp-echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: 31400
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v1
"""

# samples/tcp-echo/tcp-echo-20-v2.yaml
V2_20 = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: 31400
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v1
      weight: 80
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v2
      weight: 20
"""


def all_to(subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: 31400
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: {subset}
"""


def versions(addr: tuple[str, int], n: int) -> collections.Counter[str]:
    """Which word answered each of ``n`` connections (``one``, ``two``)."""
    return collections.Counter(echo(addr).split(" ")[0] for _ in range(n))


@pytest.fixture(scope="module")
def tcp_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Mesh, Sidecar]]:
    tmp = tmp_path_factory.mktemp("tcp")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        mesh.apply(SERVICE)
        for version, word in (("v1", "one"), ("v2", "two")):
            app = (
                sys.executable, str(SCRIPT), "--host", "{ip}", "--port", "{port}",
                "--prefix", word,
            )  # fmt: skip
            mesh.add(
                f"tcp-echo-{version}", {"app": "tcp-echo", "version": version},
                app_port=9000, app_command=app,
            )  # fmt: skip
        gw = mesh.add(
            "istio-ingressgateway", {"istio": "ingressgateway"}, namespace="istio-system",
            proxy_type="router", gateway_ports=(31400,),
        )  # fmt: skip
        yield mesh, gw
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def test_tcp_traffic_shifting_task(tcp_mesh: tuple[Mesh, Sidecar]) -> None:
    mesh, gw = tcp_mesh
    assert gw.gateway_ports is not None
    addr = (gw.ip, gw.gateway_ports[31400])
    # All to v1: every connection is answered by v1.
    mesh.apply(ALL_V1)
    eventually(lambda: echo(addr) == "one hello", 30, "tcp-echo v1 through the gateway")
    assert versions(addr, 100) == {"one": 100}
    # 80/20: about a fifth of the connections reach v2.
    mesh.apply(V2_20)
    eventually(lambda: echo(addr).startswith("two"), 30, "v2 taking connections")
    split = versions(addr, 200)
    assert set(split) == {"one", "two"}, split
    assert 20 <= split["two"] <= 60, split  # expected 40; 3.5 standard deviations either way
    # All to v2.
    mesh.apply(all_to("v2"))
    eventually(lambda: all(echo(addr) == "two hello" for _ in range(10)), 30, "only v2")
    assert versions(addr, 100) == {"two": 100}


def test_no_tcp_rule_for_the_server_accepts_no_connection(tcp_mesh: tuple[Mesh, Sidecar]) -> None:
    """A TCP Gateway server with no VirtualService bound to it forwards nothing (as Istio,
    whose listener then has no filter chain)."""
    mesh, gw = tcp_mesh
    assert gw.gateway_ports is not None
    addr = (gw.ip, gw.gateway_ports[31400])
    mesh.apply(ALL_V1)
    eventually(lambda: echo(addr) == "one hello", 30, "tcp-echo v1 through the gateway")
    res = mesh.live().cli("delete", "virtualservice", "tcp-echo")
    assert res.returncode == 0, res.stderr
    eventually(lambda: echo(addr) == "", 30, "no route, no connection")
