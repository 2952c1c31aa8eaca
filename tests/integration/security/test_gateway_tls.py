"""TLS at the ingress gateway through a real Envoy: certificates from Secrets over SDS.

The gateway (a router proxy) terminates HTTPS with the certificate of a ``kubernetes.io/tls``
Secret named by ``credentialName``, selects the certificate by SNI when several hosts share
the port, requires client certificates in MUTUAL mode, redirects HTTP to HTTPS, and serves an
updated Secret without a restart. Behind it, the backend is reached over mesh mTLS.
"""

from __future__ import annotations

import base64
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from pilotfish.api import kinds
from pilotfish.identity import CASettings, MeshCA
from tests.integration.harness import Mesh, Sidecar, eventually

pytestmark = pytest.mark.integration

HOST = "bookinfo.example.com"
OTHER_HOST = "ratings.example.com"

BACKEND = """
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo}
spec:
  hosts: [bookinfo.example.com, ratings.example.com]
  gateways: [bookinfo-gateway]
  http:
  - route: [{destination: {host: reviews, port: {number: 9080}}}]
"""


def gateway(mode: str = "SIMPLE", second_host: bool = False) -> str:
    extra = """
  - port: {number: 443, name: https-ratings, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: ratings-credential}
    hosts: [ratings.example.com]""" if second_host else ""  # fmt: skip
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    tls: {{mode: {mode}, credentialName: bookinfo-credential}}
    hosts: [bookinfo.example.com]
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: [bookinfo.example.com]
    tls: {{httpsRedirect: true}}{extra}
"""


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def tls_secret(name: str, ca: MeshCA, host: str, with_ca: bool = False) -> str:
    serving = ca.issue_serving_certificate([host])
    ca_line = f"\n  ca.crt: {_b64(ca.trust_bundle())}" if with_ca else ""
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: istio-system}}
type: kubernetes.io/tls
data:
  tls.crt: {_b64(serving.cert_chain_pem)}
  tls.key: {_b64(serving.private_key_pem)}{ca_line}
"""


def https_get(
    gw: Sidecar, sni: str, cafile: Path, client: tuple[Path, Path] | None = None
) -> tuple[int, int]:
    """(HTTP status, serial of the served certificate) of ``GET /`` over TLS with ``sni``."""
    assert gw.gateway_ports is not None
    ctx = ssl.create_default_context(cafile=str(cafile))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    with (
        socket.create_connection((gw.ip, gw.gateway_ports[443]), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, x509.load_der_x509_certificate(der).serial_number


def http_get(gw: Sidecar, host: str) -> tuple[int, str]:
    assert gw.gateway_ports is not None
    with socket.create_connection((gw.ip, gw.gateway_ports[80]), timeout=5) as s:
        s.sendall(f"GET /page HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    location = next(
        (
            line.split(":", 1)[1].strip()
            for line in head.split("\r\n")
            if line.lower().startswith("location:")
        ),
        "",
    )
    return int(head.split(" ", 2)[1]), location


def _ok(gw: Sidecar, sni: str, cafile: Path, **kw: object) -> bool:
    try:
        return https_get(gw, sni, cafile, **kw)[0] == 200  # type: ignore[arg-type]
    except (OSError, ssl.SSLError):
        return False


def explained(mesh: Mesh, url: str) -> dict[str, Any]:
    """``pilotfish x explain --from istio-ingressgateway.istio-system URL``, without sending
    the request: the gateway's step named ``tls`` and the verdict."""
    cp = mesh.cp
    res = httpx.post(
        cp.url + kinds.proxy_explain_path("istio-system", "istio-ingressgateway"),
        headers={"Authorization": f"Bearer {cp.token}"},
        json={"method": "GET", "url": url, "headers": {}},
        timeout=30,
    )
    assert res.status_code == 200, res.text
    out: dict[str, Any] = res.json()
    tls = next((s for s in out["client"] if s["stage"] == "tls"), {})
    return {"tls": tls, "verdict": out["verdict"]}


@pytest.fixture
def cas(tmp_path: Path) -> tuple[MeshCA, Path, MeshCA, Path]:
    good = MeshCA.open(CASettings(tmp_path / "gw-ca"))
    other = MeshCA.open(CASettings(tmp_path / "other-ca"))
    good_file, other_file = tmp_path / "good-ca.pem", tmp_path / "other-ca.pem"
    good_file.write_text(good.trust_bundle())
    other_file.write_text(other.trust_bundle())
    return good, good_file, other, other_file


@pytest.fixture
def ingress(mesh: Mesh) -> Iterator[tuple[Mesh, Sidecar]]:
    mesh.apply(BACKEND)
    mesh.add("reviews-v1", {"app": "reviews"}, service_account="bookinfo-reviews", mtls=True)
    gw = mesh.add(
        "istio-ingressgateway", {"istio": "ingressgateway"}, namespace="istio-system",
        service_account="istio-ingressgateway-service-account", mtls=True,
        proxy_type="router", gateway_ports=(443, 80),
    )  # fmt: skip
    yield mesh, gw


def test_simple_tls_from_a_secret_and_rotation(
    ingress: tuple[Mesh, Sidecar], cas: tuple[MeshCA, Path, MeshCA, Path]
) -> None:
    mesh, gw = ingress
    good, good_file, _, other_file = cas
    mesh.apply(tls_secret("bookinfo-credential", good, HOST) + "---" + gateway())
    eventually(lambda: _ok(gw, HOST, good_file), 30, "HTTPS with the Secret's certificate")
    status, first_serial = https_get(gw, HOST, good_file)
    assert status == 200
    # A client trusting another CA refuses the gateway's certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(gw, HOST, other_file)
    # HTTP on port 80 redirects to HTTPS.
    status, location = http_get(gw, HOST)
    assert status == 301 and location == f"https://{HOST}/page"
    # Updating the Secret rotates the served certificate, same Envoy.
    pid = gw.proc.pid
    mesh.apply(tls_secret("bookinfo-credential", good, HOST))

    def rotated() -> bool:
        return _ok(gw, HOST, good_file) and https_get(gw, HOST, good_file)[1] != first_serial

    eventually(rotated, 30, "the rotated certificate served")
    assert gw.proc.poll() is None and gw.proc.pid == pid


def test_several_hosts_on_one_port_by_sni(
    ingress: tuple[Mesh, Sidecar], cas: tuple[MeshCA, Path, MeshCA, Path]
) -> None:
    mesh, gw = ingress
    good, good_file, other, other_file = cas
    mesh.apply(
        tls_secret("bookinfo-credential", good, HOST)
        + "---"
        + tls_secret("ratings-credential", other, OTHER_HOST)
        + "---"
        + gateway(second_host=True)
    )
    eventually(lambda: _ok(gw, OTHER_HOST, other_file), 30, "second host served")
    assert _ok(gw, HOST, good_file)
    # Each SNI gets its own certificate: the other CA's does not verify for the first host.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(gw, HOST, other_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(gw, OTHER_HOST, good_file)

    # The explainer, against the same traffic: each SNI takes its server's chain and
    # certificate (the one real clients verified above), and an SNI no server names finds no
    # chain: real clients get no TLS session for it.
    for host, credential in ((HOST, "bookinfo-credential"), (OTHER_HOST, "ratings-credential")):
        out = explained(mesh, f"https://{host}/")
        assert out["tls"]["name"] == "SIMPLE", out
        assert out["tls"]["serverCertificate"] == [f"kubernetes://{credential}"], out
        assert (out["verdict"]["allowed"], out["verdict"]["status"] or 200) == (True, 200), out
        assert https_get(gw, host, good_file if host == HOST else other_file)[0] == 200
    out = explained(mesh, "https://nobody.example.com/")
    assert (
        out["verdict"]["allowed"] is False and "SNI nobody.example.com" in out["verdict"]["reason"]
    ), out
    assert not _ok(gw, "nobody.example.com", good_file)
    assert not _ok(gw, "nobody.example.com", other_file)


def test_mutual_tls_requires_a_client_certificate(
    ingress: tuple[Mesh, Sidecar], cas: tuple[MeshCA, Path, MeshCA, Path], tmp_path: Path
) -> None:
    mesh, gw = ingress
    good, good_file, other, _ = cas
    mesh.apply(
        tls_secret("bookinfo-credential", good, HOST, with_ca=True) + "---" + gateway("MUTUAL")
    )

    def client_files(ca: MeshCA, name: str) -> tuple[Path, Path]:
        serving = ca.issue_serving_certificate([f"{name}.client.test"])
        cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
        cert.write_text(serving.cert_chain_pem)
        key.write_text(serving.private_key_pem)
        return cert, key

    trusted = client_files(good, "trusted")
    untrusted = client_files(other, "untrusted")
    eventually(lambda: _ok(gw, HOST, good_file, client=trusted), 30, "MUTUAL with a client cert")
    assert not _ok(gw, HOST, good_file)
    assert not _ok(gw, HOST, good_file, client=untrusted)

    # The explainer: MUTUAL, checking clients against the Secret's CA; a request with a valid
    # client certificate (as walked) is allowed, as the trusted client was.
    out = explained(mesh, f"https://{HOST}/")
    assert out["tls"]["name"] == "MUTUAL", out
    assert out["tls"]["clientCa"] == "kubernetes://bookinfo-credential-cacert", out
    assert out["verdict"]["allowed"] is True, out
