"""A Sidecar ``ingress[].tls`` on real traffic, as Istio's "Ingress Sidecar TLS Termination"
task: the sidecar of a meshed workload (STRICT mTLS, the port set to DISABLE) terminates TLS
from a client outside the mesh with the certificate files the Sidecar names, and hands the
request to the app.

The client is this test (no sidecar), connecting to the sidecar's inbound listener on the
workload's address (explicit mode: the inbound port the harness gave the proxy).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from pilotfish.identity import CASettings, MeshCA
from tests.integration.harness import Mesh, Sidecar, eventually

PEER_AUTHENTICATION = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: disable-peer-auth-for-external-mtls-port, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  mtls: {mode: STRICT}
  portLevelMtls:
    9080: {mode: DISABLE}
"""


def sidecar(mode: str, certs: Path) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: ingress-sidecar, namespace: default}}
spec:
  workloadSelector: {{labels: {{app: httpbin}}}}
  ingress:
  - port: {{number: 9080, protocol: HTTPS, name: external}}
    defaultEndpoint: 0.0.0.0:9080
    tls:
      mode: {mode}
      privateKey: {certs}/tls.key
      serverCertificate: {certs}/tls.crt
      caCertificates: {certs}/ca.crt
"""


def issue(ca: MeshCA, hosts: list[str], where: Path, name: str) -> tuple[Path, Path]:
    """A certificate (server and client use) for ``hosts`` and its key, as files."""
    issued = ca.issue_serving_certificate(hosts)
    cert, key = where / f"{name}.crt", where / f"{name}.key"
    cert.write_text(issued.cert_chain_pem)
    key.write_text(issued.private_key_pem)
    return cert, key


def get(sc: Sidecar, ca: Path, client: tuple[Path, Path] | None = None) -> httpx.Response:
    """An HTTPS request from outside the mesh to the sidecar's inbound listener."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    url = f"https://{sc.ip}:{sc.inbound_port}/status/200"
    return httpx.get(url, verify=ctx, timeout=5)


def refused(sc: Sidecar, ca: Path, client: tuple[Path, Path] | None = None) -> bool:
    try:
        get(sc, ca, client)
    except (httpx.TransportError, ssl.SSLError):
        return True
    return False


def test_sidecar_ingress_tls_terminates_client_tls(mesh: Mesh, tmp_path: Path) -> None:
    mesh.apply(PEER_AUTHENTICATION)
    httpbin = mesh.add("httpbin", {"app": "httpbin", "version": "v1"}, mtls=True)
    certs = tmp_path / "tls-certs"
    certs.mkdir()
    apps = MeshCA.open(CASettings(tmp_path / "apps-ca"))
    (certs / "ca.crt").write_text(apps.trust_bundle())
    issue(apps, [httpbin.ip], certs, "tls")
    client = issue(apps, ["client.test.svc.cluster.local"], tmp_path, "client")
    # A certificate the Sidecar's CA did not sign (another CA's).
    other = MeshCA.open(CASettings(tmp_path / "other-ca"))
    stranger = issue(other, ["stranger.example.com"], tmp_path, "stranger")
    for p in (tmp_path, certs, *certs.iterdir()):
        p.chmod(0o755 if p.is_dir() else 0o644)
    ca = certs / "ca.crt"

    # SIMPLE: any client that trusts the server's CA gets the app's answer.
    mesh.apply(sidecar("SIMPLE", certs))
    eventually(lambda: get(httpbin, ca).status_code == 200, 30, "TLS terminated by the sidecar")
    assert get(httpbin, ca).json()["name"] == "httpbin"
    # Plaintext to the port finds no filter chain: the connection is closed.
    assert refused_plaintext(httpbin)

    # MUTUAL: the client must present a certificate from caCertificates.
    mesh.apply(sidecar("MUTUAL", certs))
    eventually(lambda: refused(httpbin, ca), 30, "a client without a certificate refused")
    assert get(httpbin, ca, client).json()["name"] == "httpbin"
    assert refused(httpbin, ca, stranger)


def refused_plaintext(sc: Sidecar) -> bool:
    try:
        httpx.get(f"http://{sc.ip}:{sc.inbound_port}/", timeout=5)
    except httpx.TransportError:
        return True
    return False
