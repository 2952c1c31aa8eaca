"""The xDS server over TLS, with and without client certificates."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pilotfish.api.node import NodeInfo
from pilotfish.testing.ads_client import AdsClient
from pilotfish.xds import DiscoveryServer, Resources, TlsSettings, XdsSettings
from tests.unit.xds import builders as b


def _issue(
    name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer[0])
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if name == "ca":
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    ca = _issue("ca", ca_key, (ca_name, ca_key))
    files: dict[str, Path] = {"ca": tmp_path / "ca.pem"}
    files["ca"].write_bytes(_pem(ca))
    for who in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(who, key, (ca_name, ca_key))
        files[f"{who}_cert"] = tmp_path / f"{who}.pem"
        files[f"{who}_key"] = tmp_path / f"{who}-key.pem"
        files[f"{who}_cert"].write_bytes(_pem(cert))
        files[f"{who}_key"].write_bytes(_key_pem(key))
    return files


def _gen(node: NodeInfo) -> Resources:
    return b.resources(clusters={"a": [("127.0.0.1", 1)]})


@pytest.mark.parametrize("mutual", [False, True], ids=["server-tls", "mutual-tls"])
async def test_serves_over_tls(pki: dict[str, Path], mutual: bool) -> None:
    tls = TlsSettings(
        cert_file=pki["server_cert"],
        key_file=pki["server_key"],
        ca_file=pki["ca"] if mutual else None,
        require_client_cert=mutual,
    )
    server = DiscoveryServer(XdsSettings(address="127.0.0.1:0", tls=tls), _gen)
    await server.start()
    target = f"127.0.0.1:{server.port}"
    try:
        good = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].read_bytes(),
            private_key=pki["client_key"].read_bytes() if mutual else None,
            certificate_chain=pki["client_cert"].read_bytes() if mutual else None,
        )
        client = AdsClient(target, b.node(), credentials=good)
        await client.start()
        try:
            await client.wait_for(lambda c: "a" in c.clusters)
        finally:
            await client.stop()

        if mutual:
            anonymous = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
            refused = AdsClient(target, b.node("other"), credentials=anonymous)
            try:
                with pytest.raises((RuntimeError, grpc.aio.AioRpcError)):
                    await refused.start()
                    await refused.wait_for(lambda c: "a" in c.clusters)
            finally:
                await refused.stop()
            assert "a" not in refused.clusters
    finally:
        await server.stop(grace=0.1)
