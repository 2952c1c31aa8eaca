from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from pilotfish.identity import pki
from pilotfish.identity.ca import MeshCA
from pilotfish.identity.csr_service import (
    CertificateAuthorityService,
    SignedCertificate,
    SigningPolicy,
)
from pilotfish.identity.errors import IdentityMismatchError, TokenExpiredError
from pilotfish.identity.spiffe import SpiffeId
from pilotfish.identity.tokens import TokenAuthority

from .conftest import T0, ManualTime, verify_client

A = SpiffeId("cluster.local", "team-a", "frontend")
B = SpiffeId("cluster.local", "team-b", "backend")


@pytest.fixture
def service(make_ca: Callable[..., MeshCA], manual_time: ManualTime) -> CertificateAuthorityService:
    tokens = TokenAuthority(b"s" * 32, now=manual_time)
    return CertificateAuthorityService(make_ca(), tokens, SigningPolicy(max_ttl=timedelta(days=2)))


def _token(service: CertificateAuthorityService, who: SpiffeId) -> str:
    return service.tokens.issue(who.namespace, who.service_account, timedelta(hours=1))


def test_signs_for_the_token_identity(service: CertificateAuthorityService) -> None:
    key = pki.generate_private_key()
    signed = service.sign(_token(service, A), pki.build_csr(key, A))
    assert signed.identity == A
    chain = pki.load_certificates(signed.cert_chain_pem)
    assert pki.same_public_key(chain[0], key)
    assert verify_client(chain, pki.load_certificates(signed.root_bundle_pem), T0) == [A.uri]
    assert signed.not_after == T0 + timedelta(hours=24)
    assert signed.serial == chain[0].serial_number


def test_refuses_a_csr_for_another_identity(
    service: CertificateAuthorityService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pilotfish.identity")
    with pytest.raises(IdentityMismatchError) as err:
        service.sign(_token(service, A), pki.build_csr(pki.generate_private_key(), B))
    assert err.value.requested == B.uri and err.value.proven == A.uri
    assert B.uri in str(err.value) and A.uri in str(err.value)
    assert any(B.uri in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_csr_without_uri_san_gets_the_token_identity(service: CertificateAuthorityService) -> None:
    key = pki.generate_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ignored.example")]), False)
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.PEM)
    )
    signed = service.sign(_token(service, B), csr)
    leaf = pki.load_certificates(signed.cert_chain_pem)[0]
    assert pki.uri_sans(leaf) == [B.uri]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []


def test_ttl_default_requested_and_capped(service: CertificateAuthorityService) -> None:
    def ttl(requested: timedelta | None) -> timedelta:
        signed = service.sign(
            _token(service, A), pki.build_csr(pki.generate_private_key(), A), requested
        )
        return signed.not_after - T0

    assert ttl(None) == timedelta(hours=24)
    assert ttl(timedelta(0)) == timedelta(hours=24)
    assert ttl(timedelta(hours=3)) == timedelta(hours=3)
    assert ttl(timedelta(days=30)) == timedelta(days=2)


def test_expired_token_is_refused(
    service: CertificateAuthorityService, manual_time: ManualTime
) -> None:
    token = _token(service, A)
    manual_time.t = T0 + timedelta(hours=2)
    with pytest.raises(TokenExpiredError):
        service.sign(token, pki.build_csr(pki.generate_private_key(), A))


def test_signed_certificate_json_round_trip(service: CertificateAuthorityService) -> None:
    signed = service.sign(_token(service, A), pki.build_csr(pki.generate_private_key(), A))
    assert SignedCertificate.from_json(signed.to_json()) == signed
    lying = dict(signed.to_json(), identity=B.uri)
    with pytest.raises(ValueError, match="does not match"):
        SignedCertificate.from_json(lying)
