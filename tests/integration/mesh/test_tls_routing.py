"""TLS at the ingress gateway for TCP traffic, through real Envoys and TLS clients:

- SNI passthrough (Istio's "Ingress Gateway without TLS Termination" task): the gateway
  forwards the still-encrypted stream to a TLS server by the ``tls`` rule's ``sniHosts``;
- ``protocol: TLS`` with ``SIMPLE`` termination into the bound ``tcp`` rules;
- ``ISTIO_MUTUAL``: the gateway terminates mesh mTLS with its own workload certificate;
- ``AUTO_PASSTHROUGH``: an east-west client's mesh mTLS (SNI
  ``outbound_.9000_._.tcp-echo.default.svc.cluster.local``) reaches the workload's sidecar
  untouched, which terminates it.

The backends run behind sidecars with mesh identities (the gateway reaches them over mTLS).
"""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pilotfish.identity import CASettings, MeshCA
from pilotfish.identity.pki import build_csr, generate_private_key, private_key_pem
from pilotfish.identity.spiffe import SpiffeId
from tests.conftest import _free_port
from tests.integration.harness import Mesh, Sidecar, eventually, start_control_plane

pytestmark = pytest.mark.integration

TCP_ECHO = Path(__file__).parents[1] / "tcp_echo.py"
NGINX_HOST = "nginx.example.com"
ECHO_HOST = "echo.example.com"

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: my-nginx, labels: {run: my-nginx}}
spec:
  ports:
  - {port: 443, protocol: TCP, name: https}
  selector: {run: my-nginx}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-echo}
spec:
  ports:
  - {name: tcp, port: 9000}
  selector: {app: tcp-echo}
"""

# Istio's "Ingress Gateway without TLS Termination" task, as written.
PASSTHROUGH = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: PASSTHROUGH
    hosts:
    - nginx.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: nginx
spec:
  hosts:
  - nginx.example.com
  gateways:
  - mygateway
  tls:
  - match:
    - port: 443
      sniHosts:
      - nginx.example.com
    route:
    - destination:
        host: my-nginx
        port:
          number: 443
"""

TERMINATING = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tcp-tls}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31443, name: tls-simple, protocol: TLS}
    tls: {mode: SIMPLE, credentialName: echo-credential}
    hosts: [echo.example.com]
  - port: {number: 31444, name: tls-mesh, protocol: TLS}
    tls: {mode: ISTIO_MUTUAL}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp-echo}
spec:
  hosts: ["*"]
  gateways: [tcp-tls]
  tcp:
  - route:
    - destination: {host: tcp-echo, port: {number: 9000}}
"""

AUTO_PASSTHROUGH = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: cross-network-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15443, name: tls, protocol: TLS}
    tls: {mode: AUTO_PASSTHROUGH}
    hosts: ["*.local"]
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass
class TlsMesh:
    mesh: Mesh
    gw: Sidecar
    #: Trusts the certificates of my-nginx and of the gateway's echo-credential.
    app_ca: Path
    #: The mesh roots, and a client certificate and key the mesh CA signed.
    mesh_roots: Path
    mesh_client: tuple[Path, Path]

    def port(self, number: int) -> tuple[str, int]:
        assert self.gw.gateway_ports is not None
        return self.gw.ip, self.gw.gateway_ports[number]


def tls_echo(
    addr: tuple[str, int],
    sni: str,
    cafile: Path,
    *,
    client: tuple[Path, Path] | None = None,
    alpn: list[str] | None = None,
    check_hostname: bool = True,
) -> str:
    """One TLS connection with ``sni``: send a line, return the reply, "" when refused."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = check_hostname
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    if alpn:
        ctx.set_alpn_protocols(alpn)
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


def opened(gw: Sidecar, service: str) -> list[str]:
    """The gateway's ``istio_tcp_connections_opened_total`` series to ``service``."""
    text = httpx.get(f"http://127.0.0.1:{gw.agent_port}/stats/prometheus", timeout=5).text
    return [
        line
        for line in text.splitlines()
        if line.startswith("istio_tcp_connections_opened_total{")
        and f'destination_service_name="{service}"' in line
        and 'reporter="source"' in line
    ]


@pytest.fixture(scope="module")
def tls_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMesh]:
    tmp = tmp_path_factory.mktemp("tls")
    cp = start_control_plane(tmp / "data", tmp / "config", _free_port(), _free_port())
    mesh = Mesh(cp, tmp, _free_port)
    try:
        apps = MeshCA.open(CASettings(tmp / "apps-ca"))
        app_ca = tmp / "apps-ca.pem"
        app_ca.write_text(apps.trust_bundle())
        nginx = apps.issue_serving_certificate([NGINX_HOST])
        cert, key = tmp / "nginx.crt", tmp / "nginx.key"
        cert.write_text(nginx.cert_chain_pem)
        key.write_text(nginx.private_key_pem)
        for p in (tmp, cert, key, app_ca):
            p.chmod(0o755 if p.is_dir() else 0o644)
        echo = apps.issue_serving_certificate([ECHO_HOST])
        mesh.apply(
            SERVICES
            + f"""---
apiVersion: v1
kind: Secret
metadata: {{name: echo-credential, namespace: istio-system}}
type: kubernetes.io/tls
data:
  tls.crt: {_b64(echo.cert_chain_pem)}
  tls.key: {_b64(echo.private_key_pem)}
"""
        )
        # A client certificate from the mesh's own CA, as an east-west sidecar holds one.
        mesh_ca = MeshCA.open(CASettings(cp.data_dir / "ca"))
        client_key = generate_private_key()
        identity = SpiffeId(mesh_ca.trust_domain, "default", "sleep")
        signed = mesh_ca.sign_workload(build_csr(client_key, identity), identity)
        client_cert, client_key_file = tmp / "client.crt", tmp / "client.key"
        client_cert.write_text(signed.cert_chain_pem)
        client_key_file.write_text(private_key_pem(client_key))
        mesh.add(
            "my-nginx", {"run": "my-nginx"}, app_port=443, mtls=True,
            app_command=(
                sys.executable, str(TCP_ECHO), "--host", "{ip}", "--port", "{port}",
                "--prefix", "nginx", "--tls", str(cert), str(key),
            ),
        )  # fmt: skip
        mesh.add(
            "tcp-echo", {"app": "tcp-echo"}, app_port=9000, mtls=True,
            app_command=(
                sys.executable, str(TCP_ECHO), "--host", "{ip}", "--port", "{port}",
                "--prefix", "one",
            ),
        )  # fmt: skip
        mesh.add("reviews-v1", {"app": "reviews"}, mtls=True)
        gw = mesh.add(
            "istio-ingressgateway", {"istio": "ingressgateway"}, namespace="istio-system",
            service_account="istio-ingressgateway-service-account", mtls=True,
            proxy_type="router", gateway_ports=(443, 31443, 31444, 31445, 15443),
        )  # fmt: skip
        yield TlsMesh(mesh, gw, app_ca, cp.roots, (client_cert, client_key_file))
    finally:
        mesh.stop()
        cp.kill(signal.SIGKILL)


def test_sni_passthrough_reaches_the_tls_server(tls_mesh: TlsMesh) -> None:
    t = tls_mesh
    t.mesh.apply(PASSTHROUGH)
    addr = t.port(443)
    eventually(
        lambda: tls_echo(addr, NGINX_HOST, t.app_ca) == "nginx hello", 30, "passthrough to nginx"
    )
    # The TLS session is the server's own: its certificate verifies for nginx.example.com.
    assert tls_echo(addr, NGINX_HOST, t.app_ca) == "nginx hello"
    # Another SNI matches no rule: no chain takes the connection.
    assert tls_echo(addr, "other.example.com", t.app_ca, check_hostname=False) == ""
    # Istio's TCP metrics, reported by the gateway as the source.
    eventually(lambda: bool(opened(t.gw, "my-nginx")), 20, "istio_tcp_connections_opened_total")


def test_tls_terminated_at_the_gateway_into_tcp_routes(tls_mesh: TlsMesh) -> None:
    t = tls_mesh
    t.mesh.apply(TERMINATING)
    simple = t.port(31443)
    # SIMPLE: the gateway's certificate (from the Secret), a plaintext backend.
    eventually(
        lambda: tls_echo(simple, ECHO_HOST, t.app_ca) == "one hello", 30, "SIMPLE TLS into tcp"
    )
    # ISTIO_MUTUAL: the gateway's mesh certificate, and a mesh client certificate required.
    mutual = t.port(31444)
    eventually(
        lambda: (
            tls_echo(
                mutual, "tcp-echo.example", t.mesh_roots, client=t.mesh_client, check_hostname=False
            )
            == "one hello"
        ),
        30,
        "ISTIO_MUTUAL into tcp",
    )
    assert tls_echo(mutual, "tcp-echo.example", t.mesh_roots, check_hostname=False) == ""
    # The mesh certificate does not verify against another CA.
    assert tls_echo(mutual, "x", t.app_ca, client=t.mesh_client, check_hostname=False) == ""

    def mesh_client() -> str:
        return tls_echo(mutual, "x", t.mesh_roots, client=t.mesh_client, check_hostname=False)

    # subjectAltNames: only the named mesh identities may connect (the client is "sleep").
    sans = "subjectAltNames: [spiffe://cluster.local/ns/default/sa/{}]"
    t.mesh.apply(
        TERMINATING.replace("mode: ISTIO_MUTUAL", "mode: ISTIO_MUTUAL, " + sans.format("other"))
    )
    eventually(lambda: mesh_client() == "", 30, "another identity required")
    t.mesh.apply(
        TERMINATING.replace("mode: ISTIO_MUTUAL", "mode: ISTIO_MUTUAL, " + sans.format("sleep"))
    )
    eventually(lambda: mesh_client() == "one hello", 30, "the client's identity allowed")

    # cipherSuites (TLS 1.2): a client offering none of them cannot connect.
    def tls12(cipher: str) -> str:
        ctx = ssl.create_default_context(cafile=str(t.app_ca))
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(cipher)
        try:
            with (
                socket.create_connection(simple, timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname=ECHO_HOST) as conn,
            ):
                conn.sendall(b"hello\n")
                return conn.recv(4096).decode().strip()
        except (OSError, ssl.SSLError):
            return ""

    suites = (
        "mode: SIMPLE, maxProtocolVersion: TLSV1_2, cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]"
    )
    t.mesh.apply(TERMINATING.replace("mode: SIMPLE", suites))
    eventually(lambda: tls12("ECDHE-ECDSA-AES128-GCM-SHA256") == "", 30, "the cipher refused")
    assert tls12("ECDHE-ECDSA-AES256-GCM-SHA384") == "one hello"


HTTPS_MESH = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: https-mesh}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 31445, name: https-mesh, protocol: HTTPS}
    tls: {mode: ISTIO_MUTUAL}
    hosts: [reviews.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-mesh}
spec:
  hosts: [reviews.example.com]
  gateways: [https-mesh]
  http:
  - route: [{destination: {host: reviews}}]
"""


def test_https_istio_mutual_routes_http(tls_mesh: TlsMesh) -> None:
    t = tls_mesh
    t.mesh.apply(HTTPS_MESH)

    def get(client: tuple[Path, Path] | None) -> int:
        ctx = ssl.create_default_context(cafile=str(t.mesh_roots))
        ctx.check_hostname = False
        if client is not None:
            ctx.load_cert_chain(str(client[0]), str(client[1]))
        try:
            with (
                socket.create_connection(t.port(31445), timeout=5) as raw,
                ctx.wrap_socket(raw, server_hostname="reviews.example.com") as conn,
            ):
                conn.sendall(
                    b"GET / HTTP/1.1\r\nHost: reviews.example.com\r\nConnection: close\r\n\r\n"
                )
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
        except (OSError, ssl.SSLError):
            return 0
        return int(data.split(b" ", 2)[1]) if data else 0

    eventually(lambda: get(t.mesh_client) == 200, 30, "HTTPS with mesh mTLS to reviews")
    assert get(None) == 0  # no client certificate: no handshake


def test_auto_passthrough_forwards_mesh_mtls_by_sni(tls_mesh: TlsMesh) -> None:
    t = tls_mesh
    t.mesh.apply(AUTO_PASSTHROUGH)
    addr = t.port(15443)
    sni = "outbound_.9000_._.tcp-echo.default.svc.cluster.local"

    def east_west(name: str) -> str:
        # The sidecar of tcp-echo terminates this mTLS: its certificate, the mesh roots.
        return tls_echo(
            addr, name, t.mesh_roots, client=t.mesh_client, alpn=["istio"], check_hostname=False
        )

    eventually(lambda: east_west(sni) == "one hello", 30, "AUTO_PASSTHROUGH to tcp-echo")
    # A name that is no cluster of the mesh is not forwarded.
    assert east_west("outbound_.9000_._.nothing.default.svc.cluster.local") == ""
