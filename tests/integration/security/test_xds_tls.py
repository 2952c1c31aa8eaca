"""The control plane's xDS/CA port over TLS by default, against real processes: what its
serving certificate names, agents that cannot trust or reach it saying why (and staying
not-ready), and the plaintext option for tests and trusted loopback setups."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from pilotfish.identity import CASettings, MeshCA
from tests.integration.harness import REVIEWS_SERVICE, ControlPlane, Mesh, Sidecar, eventually

pytestmark = pytest.mark.integration


def _peer_certificate(cp: ControlPlane, server_name: str) -> x509.Certificate:
    """The xDS port's certificate, verified with the mesh roots for ``server_name``."""
    context = ssl.create_default_context(cafile=str(cp.roots))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", cp.xds_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def _not_ready_reason(sidecar: Sidecar) -> str:
    """The agent's ``/healthz/ready`` body ("" while it answers 200)."""
    response = httpx.get(f"http://127.0.0.1:{sidecar.agent_port}/healthz/ready", timeout=2)
    return "" if response.status_code == 200 else response.text


def test_serving_certificate_is_from_the_mesh_ca_and_names_what_agents_dial(
    control_plane_factory: Callable[..., ControlPlane],
) -> None:
    cp = control_plane_factory("--xds-san", "cp.example.test")
    assert cp.tls and cp.roots.is_file()
    cert = _peer_certificate(cp, "127.0.0.1")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = sans.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert "127.0.0.1" in ips
    for name in ("pilotfish.istio-system.svc", "istiod.istio-system.svc", "localhost"):
        assert name in dns
    assert "cp.example.test" in dns
    # Verified by name too; a name it does not carry fails verification.
    assert _peer_certificate(cp, "cp.example.test").serial_number == cert.serial_number
    with pytest.raises(ssl.SSLCertVerificationError):
        _peer_certificate(cp, "elsewhere.example.test")


def test_agents_that_cannot_trust_or_reach_the_tls_port_say_why_and_stay_not_ready(
    mesh: Mesh, tmp_path: Path
) -> None:
    other_ca = MeshCA.open(CASettings(tmp_path / "other-ca"))
    wrong = tmp_path / "other-roots.pem"
    wrong.write_text(other_ca.trust_bundle())
    untrusted = mesh.add(
        "untrusted", {"app": "untrusted"}, app_port=None,
        extra_args=("--ca-file", str(wrong)), wait=False,
    )  # fmt: skip
    untrusted_with_token = mesh.add(
        "untrusted-mtls", {"app": "untrusted"}, app_port=None, mtls=True,
        extra_args=("--ca-file", str(wrong)), wait=False,
    )  # fmt: skip
    plaintext = mesh.add(
        "plaintext", {"app": "plaintext"}, app_port=None,
        extra_args=("--plaintext",), wait=False,
    )  # fmt: skip

    not_signed = "its certificate is not signed by a CA in --ca-file"
    expected = [
        (untrusted, not_signed),
        (untrusted_with_token, not_signed),
        (plaintext, "it serves TLS: pass --ca-file"),
    ]
    for sidecar, text in expected:
        log, name = sidecar.log, sidecar.name
        eventually(lambda: text in log.read_text(), 30, f"{name} saying why")  # noqa: B023
        eventually(lambda: text in _not_ready_reason(sidecar), 10, f"{name} reason")  # noqa: B023
        assert sidecar.proc.poll() is None
    # Without a certificate for the control plane, Envoy is not even started.
    assert "no workload certificate yet" in _not_ready_reason(untrusted_with_token)
    assert mesh.cp.cli("proxy-status", check=True).stdout.count("untrusted") == 0


def test_plaintext_option_serves_xds_and_the_ca_without_tls(
    control_plane_factory: Callable[..., ControlPlane], tmp_path: Path, free_port: Callable[[], int]
) -> None:
    cp = control_plane_factory("--xds-plaintext")
    assert not cp.tls
    mesh = Mesh(cp, tmp_path, free_port)
    try:
        mesh.apply(REVIEWS_SERVICE)
        mesh.add("reviews-v1", {"app": "reviews"}, mtls=True)
        client = mesh.add("productpage", {"app": "productpage"}, app_port=None, mtls=True)
        eventually(lambda: client.request("reviews:9080").status_code == 200, 30, "mesh")
        xfcc = client.request("reviews:9080").json()["headers"]["x-forwarded-client-cert"]
        assert "URI=spiffe://cluster.local/ns/default/sa/default" in xfcc
        # An agent expecting TLS is told what the control plane is.
        tls_agent = mesh.add(
            "expects-tls", {"app": "x"}, app_port=None,
            extra_args=("--ca-file", str(cp.roots)), wait=False,
        )  # fmt: skip
        text = "a control plane started with --xds-plaintext needs --plaintext"
        eventually(lambda: text in tls_agent.log.read_text(), 30, "the agent saying why")
        assert text in _not_ready_reason(tls_agent)
    finally:
        mesh.stop()
