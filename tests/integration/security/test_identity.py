"""Workload identity against a real control plane: tokens, the CA on the xDS port (over TLS,
the default, as every harness mesh runs it), xDS over TLS with a server name, and certificate
renewal under traffic."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest

from pilotfish.identity import CertificateRequestError, SpiffeId, pki, request_certificate
from tests.integration.harness import REVIEWS_SERVICE, ControlPlane, Mesh, Sidecar, eventually

pytestmark = pytest.mark.integration


def _csr(identity: SpiffeId) -> str:
    return pki.build_csr(pki.generate_private_key(), identity)


def _channel(cp: ControlPlane, tls: bool) -> grpc.aio.Channel:
    target = f"127.0.0.1:{cp.xds_port}"
    if not tls:
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(root_certificates=cp.roots.read_bytes())
    return grpc.aio.secure_channel(target, credentials)


async def _request(cp: ControlPlane, token: str, csr: str, tls: bool | None = None) -> str:
    async with _channel(cp, cp.tls if tls is None else tls) as channel:
        signed = await request_certificate(channel, token, csr)
    return signed.identity.uri


def test_token_proves_only_its_own_service_account(mesh: Mesh) -> None:
    cp = mesh.cp
    token = mesh.token("default", "reviews").read_text().strip()
    mine = SpiffeId("cluster.local", "default", "reviews")
    theirs = SpiffeId("cluster.local", "default", "ratings")
    assert asyncio.run(_request(cp, token, _csr(mine))) == mine.uri
    with pytest.raises(CertificateRequestError) as refused:
        asyncio.run(_request(cp, token, _csr(theirs)))
    assert refused.value.code == "PERMISSION_DENIED"
    assert "spiffe://cluster.local/ns/default/sa/ratings" in str(refused.value)
    # A forged token is refused as unauthenticated.
    with pytest.raises(CertificateRequestError) as forged:
        asyncio.run(_request(cp, token[:-4] + "AAAA", _csr(mine)))
    assert forged.value.code == "UNAUTHENTICATED"
    # Tokens come only with the admin token.
    path = f"{cp.url}/apis/pilotfish.io/v1/namespaces/default/serviceaccounts/ratings/token"
    assert httpx.post(path, timeout=5).status_code == 401
    ok = httpx.post(
        path,
        json={"spec": {"expirationSeconds": 600}},
        headers={"Authorization": f"Bearer {cp.token}"},
        timeout=5,
    )
    assert ok.status_code == 201 and ok.json()["kind"] == "TokenRequest"
    assert ok.json()["status"]["token"].count(".") == 2


def test_agent_with_a_token_for_another_account_gets_no_certificate(
    mesh: Mesh, tmp_path: Path
) -> None:
    """The agent asks for its --service-account; a token for another one is refused, and the
    proxy never turns ready without a certificate (Envoy starts while the certificate is
    fetched, so its readiness listener answers 503 with the reason)."""
    wrong = mesh.token("default", "ratings")
    sidecar = mesh.add(
        "reviews-v1", {"app": "reviews"}, service_account="reviews",
        extra_args=("--token-file", str(wrong)), wait=False,
    )  # fmt: skip

    def refused() -> bool:
        log = sidecar.log.read_text()
        return "asks for spiffe://cluster.local/ns/default/sa/reviews" in log

    eventually(refused, 20, "the CA refusing the agent")
    assert (
        "the token proves spiffe://cluster.local/ns/default/sa/ratings" in sidecar.log.read_text()
    )
    assert sidecar.proc.poll() is None

    def readiness() -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{sidecar.readiness_port}/healthz/ready", timeout=2)
        except httpx.HTTPError:
            return None

    eventually(lambda: readiness() is not None, 20, "Envoy's readiness listener answering")
    resp = readiness()
    assert resp is not None and resp.status_code == 503, resp and resp.text
    assert "certificate" in resp.text, resp.text


def test_xds_and_ca_over_tls_with_a_server_name(mesh: Mesh) -> None:
    """Agents that dial by name verify one of the serving certificate's DNS names; a
    plaintext client cannot talk to the TLS port."""
    assert mesh.cp.tls
    mesh.apply(REVIEWS_SERVICE)
    tls_args = ("--ca-file", str(mesh.cp.roots), "--xds-server-name", "pilotfish.istio-system.svc")
    mesh.add("reviews-v1", {"app": "reviews"}, mtls=True, extra_args=tls_args)
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None, mtls=True,
                      extra_args=tls_args)  # fmt: skip
    eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "mesh over TLS")
    xfcc = client.request("reviews:9080").json()["headers"]["x-forwarded-client-cert"]
    assert "URI=spiffe://cluster.local/ns/default/sa/default" in xfcc
    token = mesh.token("default", "default").read_text().strip()
    identity = SpiffeId("cluster.local", "default", "default")
    csr = _csr(identity)
    assert asyncio.run(_request(mesh.cp, token, csr)) == identity.uri
    with pytest.raises(CertificateRequestError) as plain:
        asyncio.run(_request(mesh.cp, token, csr, tls=False))
    assert plain.value.code == "UNAVAILABLE"


def _serials(sidecar: Sidecar) -> set[str]:
    """Serials of the workload certificates Envoy holds (admin /certs)."""
    data = httpx.get(f"http://127.0.0.1:{sidecar.admin_port}/certs", timeout=5).json()
    return {
        c["serial_number"]
        for entry in data.get("certificates") or ()
        for c in entry.get("cert_chain") or ()
        if any(s.get("uri") for s in c.get("subject_alt_names") or ())
    }


def test_certificate_renewal_under_load_fails_no_request(mesh: Mesh) -> None:
    """Short-lived certificates (90 s: renewed after about 15 s, as lifetimes count the
    one-minute backdating) rotate under a steady request loop without a failed request."""
    mesh.apply(REVIEWS_SERVICE)
    server = mesh.add("reviews-v1", {"app": "reviews"}, mtls=True, cert_ttl="90s")
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None, mtls=True)
    eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "mesh")
    eventually(lambda: bool(_serials(server)), 10, "server certificate in Envoy")
    first = _serials(server)

    results: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    r = http.get(
                        f"http://127.0.0.1:{client.outbound_port}/",
                        headers={"Host": "reviews:9080"},
                    )
                    results.append(r.status_code)
                except httpx.HTTPError:
                    results.append(0)
                time.sleep(0.02)

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        eventually(lambda: bool(_serials(server) - first), 60, "server certificate renewed")
        renewed = len(results)
        eventually(lambda: len(results) > renewed + 50, 30, "requests after the renewal")
    finally:
        stop.set()
        worker.join(15)
    assert len(results) > 100
    assert [s for s in results if s != 200] == []
