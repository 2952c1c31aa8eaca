"""A Sidecar egress listener with ``captureMode: NONE`` and ``bind``, on real traffic: the
sidecar opens a real HTTP listener on ``bind:port`` that the app sends its requests to (no
capture needed), routing the hosts that listener imports, as Istio's "bound" egress
listeners do; a TCP port forwards connections to the service the listener imports."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from pilotfish.identity import CASettings, MeshCA
from tests.integration.harness import REVIEWS_SERVICE, Mesh, eventually, free_loopback_ip
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


def _tls_line(addr: tuple[str, int], sni: str, ca: Path) -> str:
    """One line over TLS with ``sni`` (the server's certificate verified for it): the
    answer, or "" when the connection fails."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with (
            socket.create_connection(addr, timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=sni) as tls,
        ):
            tls.sendall(b"hello\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
    except (OSError, ssl.SSLError):
        return ""
    return data.decode().strip()


def external_tls(name: str, ip: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}}}
spec:
  hosts: [{name}.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 9443, name: tls, protocol: TLS}}]
  endpoints: [{{address: {ip}}}]
"""


def test_a_bound_tls_egress_listener_forwards_by_sni(mesh: Mesh, tmp_path: Path) -> None:
    """A TLS egress port with ``captureMode: NONE``: the sidecar listens on ``bind:port``
    and forwards the app's still-encrypted connection to the external TLS server its SNI
    names (two servers outside the mesh, each with its own ServiceEntry)."""
    ca = MeshCA.open(CASettings(tmp_path / "apps-ca"))
    bundle = tmp_path / "ca.pem"
    bundle.write_text(ca.trust_bundle())
    servers = []
    try:
        for name in ("one", "two"):
            issued = ca.issue_serving_certificate([f"{name}.example.com"])
            cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
            cert.write_text(issued.cert_chain_pem)
            key.write_text(issued.private_key_pem)
            ip = free_loopback_ip(9443)
            cmd = (sys.executable, str(SCRIPT), "--host", ip, "--port", "9443", "--prefix", name)
            servers.append(subprocess.Popen([*cmd, "--tls", str(cert), str(key)]))
            mesh.apply(external_tls(name, ip))
        client = mesh.add("sleep", {"app": "sleep"}, app_port=None)
        addr = (client.ip, 9443)
        assert _tls_line(addr, "two.example.com", bundle) == ""  # no listener yet
        mesh.apply(
            f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: bound-tls, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: sleep}}}}
  egress:
  - port: {{number: 9443, protocol: TLS, name: tls}}
    bind: {client.ip}
    captureMode: NONE
    hosts: [./one.example.com, ./two.example.com]
"""
        )
        eventually(
            lambda: _tls_line(addr, "two.example.com", bundle) == "two hello",
            30,
            "the bound TLS egress listener",
        )
        assert _tls_line(addr, "one.example.com", bundle) == "one hello"
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(10)


def test_an_ingress_bind_moves_the_inbound_listener(mesh: Mesh) -> None:
    """``ingress[].bind`` on a proxy without capture: the sidecar's inbound listener for the
    port is on that address instead of the workload's own, as Istio binds it."""
    mesh.apply(REVIEWS_SERVICE)
    reviews = mesh.add("reviews", {"app": "reviews", "version": "v1"})
    own = f"http://{reviews.ip}:{reviews.inbound_port}/"
    eventually(lambda: httpx.get(own, timeout=5).status_code == 200, 30, "the inbound listener")
    other = free_loopback_ip(int(reviews.inbound_port or 0))
    mesh.apply(
        f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: reviews, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: reviews}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTP, name: http}}
    bind: {other}
    defaultEndpoint: 0.0.0.0:9080
"""
    )
    bound = f"http://{other}:{reviews.inbound_port}/"
    eventually(lambda: httpx.get(bound, timeout=5).json()["name"] == "reviews", 30, "the bind")

    def closed() -> bool:
        try:
            httpx.get(own, timeout=5)
        except httpx.TransportError:
            return True
        return False

    eventually(closed, 30, "nothing left on the workload's own address")
