"""TLS origination by a DestinationRule ``tls.mode: SIMPLE`` without a CA of its own: the
sidecar verifies the external server with the system roots, as Istio does (its
``VERIFY_CERTIFICATE_AT_CLIENT``, on by default): a server whose CA the host does not trust
is refused (503), one it trusts answers; ``insecureSkipVerify: true`` skips verification.

The server's CA is in no real system bundle, so the "trusting host" is a sidecar started with
``--system-ca-file`` naming a bundle that holds it; the other sidecar keeps the default
(Debian's ``/etc/ssl/certs/ca-certificates.crt``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.external import SERVER, _certs
from tests.integration.harness import Mesh, eventually

pytestmark = pytest.mark.integration


def entry(port: int, skip_verify: bool = False) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ext}}
spec:
  hosts: [ext.example]
  location: MESH_EXTERNAL
  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ext}}
spec:
  host: ext.example
  trafficPolicy:
    tls: {{mode: SIMPLE, sni: ext.example, insecureSkipVerify: {str(skip_verify).lower()}}}
"""


def test_simple_tls_without_a_ca_verifies_with_the_system_roots(
    mesh: Mesh, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    ca_pem, cert, key = _certs(tmp_path, ["ext.example"])
    trust = tmp_path / "trusted-roots.pem"
    trust.write_text(ca_pem)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(cert), str(key)])
    try:
        mesh.apply(entry(port))
        default = mesh.add("default-roots", {"app": "a"}, app_port=None)
        trusting = mesh.add(
            "trusting", {"app": "b"}, app_port=None, extra_args=("--system-ca-file", str(trust))
        )

        def answer(sidecar_name: str) -> tuple[int, str]:
            sc = default if sidecar_name == "default" else trusting
            r = sc.request("ext.example")
            return r.status_code, r.text

        # The trusting host verifies the server and gets its answer, over TLS.
        eventually(lambda: answer("trusting")[0] == 200, 30, "TLS origination, trusted CA")
        assert "external tls=True host=ext.example" in answer("trusting")[1]
        # The host's real roots do not know the server's CA: the handshake fails on
        # verification.
        assert answer("default")[0] == 503
        stats = httpx.get(f"http://127.0.0.1:{default.admin_port}/stats", timeout=5).text
        failed = "cluster.outbound|80||ext.example.ssl.fail_verify_error: "
        assert int(next(s for s in stats.splitlines() if s.startswith(failed))[len(failed) :]) > 0
        # insecureSkipVerify: no verification at all.
        mesh.apply(entry(port, skip_verify=True))
        eventually(lambda: answer("default")[0] == 200, 30, "insecureSkipVerify")
        assert "external tls=True" in answer("default")[1]
    finally:
        server.terminate()
        server.wait(5)
