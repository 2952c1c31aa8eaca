"""Rendered bootstraps are accepted by the real Envoy (``envoy --mode validate``)."""

from __future__ import annotations

import datetime
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.agent.bootstrap import render_bootstrap, write_bootstrap
from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.agent.settings import HostPort, XdsTls
from pilotfish.api.node import NodeInfo

from .conftest import loopback_settings

pytestmark = pytest.mark.integration


def _validate(bootstrap: dict[str, Any], path: Path) -> subprocess.CompletedProcess[str]:
    write_bootstrap(bootstrap, path)
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _write_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a client certificate signed by it (ECDSA P-256)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "proxy")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = (
        directory / "ca.pem",
        directory / "cert.pem",
        directory / "key.pem",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@pytest.mark.parametrize("api", ["delta", "sotw"])
def test_sidecar_bootstrap_validates(
    api: str, tmp_path: Path, free_port: Callable[[], int]
) -> None:
    settings = loopback_settings(tmp_path, free_port, xds_api=api)
    result = _validate(render_bootstrap(settings), tmp_path / "b.json")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "OK" in result.stdout


def test_tls_bootstrap_validates_with_files_present(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    ca, cert, key = _write_pki(tmp_path)
    tls = XdsTls(ca_file=ca, cert_file=cert, key_file=key, server_name="istiod.istio-system.svc")
    settings = loopback_settings(
        tmp_path, free_port, xds_tls=tls, discovery_address=HostPort.parse("localhost:15012")
    )
    result = _validate(render_bootstrap(settings), tmp_path / "b.json")
    assert result.returncode == 0, result.stderr + result.stdout


def test_tls_bootstrap_with_missing_ca_is_rejected(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    # Shows validation really reads the TLS files, so the test above can fail.
    tls = XdsTls(ca_file=tmp_path / "missing-ca.pem")
    result = _validate(
        render_bootstrap(loopback_settings(tmp_path, free_port, xds_tls=tls)), tmp_path / "b.json"
    )
    assert result.returncode != 0


def test_router_bootstrap_validates(tmp_path: Path, free_port: Callable[[], int]) -> None:
    node = NodeInfo(
        proxy_type="router",
        ip="127.0.0.1",
        pod_name="ingressgateway",
        namespace="istio-system",
        labels={"istio": "ingressgateway"},
        interception_mode="NONE",
        gateway_ports={80: 8080, 443: 8443},
    )
    settings = loopback_settings(tmp_path, free_port, node=node, readiness_bind="0.0.0.0")
    result = _validate(render_bootstrap(settings), tmp_path / "b.json")
    assert result.returncode == 0, result.stderr + result.stdout


def test_bootstrap_without_agent_validates(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = loopback_settings(tmp_path, free_port, agent_port=None, initial_fetch_timeout_s=0)
    result = _validate(render_bootstrap(settings), tmp_path / "b.json")
    assert result.returncode == 0, result.stderr + result.stdout
