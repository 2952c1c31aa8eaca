"""Mesh mTLS through real Envoys: auto mTLS, PeerAuthentication modes and precedence, XFCC.

A control plane, sidecars in explicit mode on loopback with workload tokens (their agents get
certificates from the control plane's CA and serve them over SDS), real requests. A
"plaintext client" is a plain HTTP request straight to the server sidecar's inbound port, as
a pod without a sidecar would send it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.harness import REVIEWS_SERVICE, Mesh, Sidecar, eventually

pytestmark = pytest.mark.integration


def peer_authentication(
    name: str, namespace: str, mode: str, selector: str = "", ports: str = ""
) -> str:
    return f"""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  {selector}
  mtls: {{mode: {mode}}}
  {ports}
"""


def plain_get(server: Sidecar) -> int:
    """A plaintext request straight to the server sidecar's inbound port: its status, or 0
    when the connection is refused or closed."""
    try:
        r = httpx.get(f"http://{server.ip}:{server.inbound_port}/plain", timeout=5)
    except httpx.HTTPError:
        return 0
    return r.status_code


def mesh_get(client: Sidecar, host: str = "reviews:9080") -> httpx.Response:
    return client.request(host, "/mesh")


@pytest.fixture
def meshed(mesh: Mesh) -> Iterator[tuple[Mesh, Sidecar, Sidecar]]:
    mesh.apply(REVIEWS_SERVICE)
    server = mesh.add(
        "reviews-v1", {"app": "reviews", "version": "v1"}, service_account="bookinfo-reviews",
        mtls=True,
    )  # fmt: skip
    client = mesh.add(
        "productpage", {"app": "productpage"}, app_port=None,
        service_account="bookinfo-productpage", mtls=True,
    )  # fmt: skip
    eventually(lambda: mesh_get(client).status_code == 200, 30, "reviews through the mesh")
    yield mesh, server, client


def test_meshed_client_to_meshed_server_is_mtls(meshed: tuple[Mesh, Sidecar, Sidecar]) -> None:
    _, server, client = meshed
    r = mesh_get(client)
    assert r.status_code == 200
    xfcc = r.json()["headers"]["x-forwarded-client-cert"]
    assert "URI=spiffe://cluster.local/ns/default/sa/bookinfo-productpage" in xfcc
    assert "By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews" in xfcc
    # PERMISSIVE by default: a plaintext caller is accepted too, without XFCC.
    plain = httpx.get(f"http://{server.ip}:{server.inbound_port}/", timeout=5)
    assert plain.status_code == 200
    assert "x-forwarded-client-cert" not in plain.json()["headers"]
    # ...and a forged XFCC from a plaintext caller is dropped.
    forged = httpx.get(
        f"http://{server.ip}:{server.inbound_port}/",
        headers={"x-forwarded-client-cert": "URI=spiffe://cluster.local/ns/default/sa/admin"},
        timeout=5,
    )
    assert "x-forwarded-client-cert" not in forged.json()["headers"]


def test_strict_refuses_plaintext_and_accepts_mesh(meshed: tuple[Mesh, Sidecar, Sidecar]) -> None:
    mesh, server, client = meshed
    mesh.apply(peer_authentication("default", "istio-system", "STRICT"))
    eventually(lambda: plain_get(server) == 0, 20, "STRICT refusing plaintext")
    assert mesh_get(client).status_code == 200
    # PERMISSIVE in the namespace overrides the mesh.
    mesh.apply(peer_authentication("default", "default", "PERMISSIVE"))
    eventually(lambda: plain_get(server) == 200, 20, "namespace PERMISSIVE accepting plaintext")
    assert mesh_get(client).status_code == 200
    # STRICT at the workload overrides it...
    selector = "selector: {matchLabels: {app: reviews}}"
    mesh.apply(peer_authentication("reviews", "default", "STRICT", selector))
    eventually(lambda: plain_get(server) == 0, 20, "workload STRICT")
    assert mesh_get(client).status_code == 200
    # ...and UNSET at the workload inherits the namespace (PERMISSIVE). After STRICT, so that
    # the wait sees the change: before it, plaintext was accepted already.
    mesh.apply(peer_authentication("reviews", "default", "UNSET", selector))
    eventually(lambda: plain_get(server) == 200, 20, "UNSET inheriting PERMISSIVE")
    assert mesh_get(client).status_code == 200


def test_destination_rule_disable_toward_strict_fails(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    mesh, server, client = meshed
    mesh.apply(peer_authentication("default", "default", "STRICT"))
    eventually(lambda: plain_get(server) == 0, 20, "STRICT")
    mesh.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: DISABLE}}
"""
    )
    eventually(lambda: mesh_get(client).status_code == 503, 20, "plaintext client refused")
    mesh.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
"""
    )
    eventually(lambda: mesh_get(client).status_code == 200, 20, "explicit ISTIO_MUTUAL")


def test_client_without_sidecar_certificate_is_plaintext_and_strict_refuses_it(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    """Auto mTLS follows the caller: a sidecar without a workload token sends plaintext."""
    mesh, _, _ = meshed
    legacy = mesh.add("legacy", {"app": "legacy"}, app_port=None, service_account="legacy")
    eventually(lambda: mesh_get(legacy).status_code == 200, 20, "legacy under PERMISSIVE")
    assert "x-forwarded-client-cert" not in mesh_get(legacy).json()["headers"]
    mesh.apply(peer_authentication("default", "default", "STRICT"))
    eventually(lambda: mesh_get(legacy).status_code == 503, 20, "legacy refused under STRICT")


def test_port_level_disable_on_a_strict_workload(mesh: Mesh) -> None:
    mesh.apply(REVIEWS_SERVICE)
    server = mesh.add(
        "reviews-v1", {"app": "reviews"}, service_account="bookinfo-reviews", mtls=True
    )
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None, mtls=True)
    selector = "selector: {matchLabels: {app: reviews}}"
    # STRICT for the workload, DISABLE for another port: 9080 is STRICT.
    mesh.apply(
        peer_authentication(
            "reviews", "default", "STRICT", selector, "portLevelMtls: {9081: {mode: DISABLE}}"
        )
    )
    eventually(lambda: plain_get(server) == 0, 20, "port 9080 STRICT")
    assert mesh_get(client).status_code == 200
    # DISABLE for 9080: plaintext only there, and automatic mTLS follows it (as Istio's
    # clients do): the mesh client sends plaintext...
    mesh.apply(
        peer_authentication(
            "reviews", "default", "STRICT", selector, "portLevelMtls: {9080: {mode: DISABLE}}"
        )
    )
    eventually(lambda: plain_get(server) == 200, 20, "port 9080 DISABLE")
    eventually(lambda: mesh_get(client).status_code == 200, 20, "plaintext to a DISABLE port")
    assert "x-forwarded-client-cert" not in mesh_get(client).json()["headers"]
    # ...and a DestinationRule saying DISABLE for that port too keeps it so.
    mesh.apply(
        """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    portLevelSettings: [{port: {number: 9080}, tls: {mode: DISABLE}}]
"""
    )
    eventually(lambda: mesh_get(client).status_code == 200, 20, "plaintext to 9080")


def test_auto_mtls_sends_plaintext_to_a_port_level_disable(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    """Istio's clients read the server's PeerAuthentication: a port set to DISABLE gets
    plaintext from a meshed client (mTLS there would be refused: 503)."""
    mesh, server, client = meshed
    selector = "selector: {matchLabels: {app: reviews}}"
    # STRICT first, so that each step below waits for a change it can see: before any
    # policy the port is PERMISSIVE, which accepts plaintext and mTLS alike.
    mesh.apply(peer_authentication("reviews", "default", "STRICT", selector))
    eventually(lambda: plain_get(server) == 0, 20, "port 9080 STRICT")
    ports = "portLevelMtls: {9080: {mode: DISABLE}}"
    mesh.apply(peer_authentication("reviews", "default", "STRICT", selector, ports))
    eventually(lambda: plain_get(server) == 200, 20, "port 9080 accepting plaintext only")

    def plaintext() -> bool:
        r = mesh_get(client)
        return r.status_code == 200 and "x-forwarded-client-cert" not in r.json()["headers"]

    eventually(plaintext, 20, "the client sending plaintext")
    for _ in range(5):
        r = mesh_get(client)
        assert r.status_code == 200
        # Plaintext: the server's sidecar saw no client certificate, so no XFCC.
        assert "x-forwarded-client-cert" not in r.json()["headers"]
    # Back to STRICT on the port: the client returns to mTLS.
    mesh.apply(peer_authentication("reviews", "default", "STRICT", selector))
    eventually(lambda: plain_get(server) == 0, 20, "STRICT again")

    def mtls_again() -> bool:
        r = mesh_get(client)
        return r.status_code == 200 and "x-forwarded-client-cert" in r.json()["headers"]

    eventually(mtls_again, 20, "mTLS again")


def internal_entry(server: Sidecar, sans: list[str]) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: db}}
spec:
  hosts: [db.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - address: {server.ip}
    ports: {{http: {server.inbound_port}}}
    labels: {{security.istio.io/tlsMode: istio}}
  subjectAltNames: {sans}
"""


def test_service_entry_subject_alt_names_verify_the_endpoints_certificate(
    meshed: tuple[Mesh, Sidecar, Sidecar],
) -> None:
    """Auto mTLS to a MESH_INTERNAL entry's endpoint (no serviceAccount of its own) verifies
    the server's certificate against the entry's subjectAltNames: a name the certificate does
    not carry fails the handshake, the right one goes through over mTLS."""
    mesh, server, client = meshed
    mesh.apply(internal_entry(server, ["spiffe://cluster.local/ns/default/sa/someone-else"]))

    def status() -> int:
        return client.request("db.internal", "/db").status_code

    eventually(lambda: status() == 503, 30, "the wrong SAN refused")
    stats = httpx.get(f"http://127.0.0.1:{client.admin_port}/stats", timeout=5).text
    failed = "cluster.outbound|80||db.internal.ssl.fail_verify_san: "
    assert int(next(s for s in stats.splitlines() if s.startswith(failed))[len(failed) :]) > 0
    mesh.apply(internal_entry(server, ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]))
    eventually(lambda: status() == 200, 30, "the right SAN accepted")
    r = client.request("db.internal", "/db")
    assert (
        "By=spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
        in (r.json()["headers"]["x-forwarded-client-cert"])
    )
