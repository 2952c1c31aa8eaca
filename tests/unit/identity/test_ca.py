from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from pilotfish.identity import pki
from pilotfish.identity.ca import (
    CA_CERT,
    CA_KEY,
    CERT_CHAIN,
    NEXT_ROOT_CERT,
    ROOT_CERT,
    ROOT_KEY,
    CASettings,
    MeshCA,
    build_root,
)
from pilotfish.identity.errors import CALoadError, CsrError, IdentityError, RotationError
from pilotfish.identity.spiffe import SpiffeId

from .conftest import T0, MakeCA, ManualTime, verify_client

ID = SpiffeId("cluster.local", "default", "bookinfo-reviews")


def _sign(
    ca: MeshCA, identity: SpiffeId = ID, ttl: timedelta | None = None
) -> tuple[ec.EllipticCurvePrivateKey, list[x509.Certificate], list[x509.Certificate]]:
    key = pki.generate_private_key()
    chain_pem, bundle_pem = ca.sign_workload(pki.build_csr(key, identity), identity, ttl)
    return key, pki.load_certificates(chain_pem), pki.load_certificates(bundle_pem)


def test_first_start_creates_a_long_lived_root(tmp_path: Path, make_ca: MakeCA) -> None:
    ca = make_ca()
    root = ca.roots[0]
    assert (tmp_path / "ca" / ROOT_KEY).stat().st_mode & 0o777 == 0o600
    assert root.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "cluster.local"
    )
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert root.not_valid_after_utc - T0 == timedelta(days=3650)
    public_key = root.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    again = make_ca()
    assert again.roots[0].fingerprint(hashes.SHA256()) == root.fingerprint(hashes.SHA256())


def test_workload_certificate_profile(make_ca: MakeCA) -> None:
    ca = make_ca()
    key, chain, roots = _sign(ca)
    (leaf,) = chain
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [ID.uri]
    assert len(list(san.value)) == 1
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_before_utc == T0 - timedelta(minutes=1)
    assert leaf.not_valid_after_utc == T0 + timedelta(hours=24)
    assert pki.same_public_key(leaf, key)
    assert verify_client(chain, roots, T0) == [ID.uri]
    assert pki.verify_chain(chain, roots, T0) == roots[0]


def test_csr_names_are_ignored(make_ca: MakeCA) -> None:
    ca = make_ca()
    key = pki.generate_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "admin")]))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("evil.example"),
                    x509.UniformResourceIdentifier("spiffe://cluster.local/ns/x/sa/y"),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    chain_pem, _ = ca.sign_workload(csr.public_bytes(Encoding.PEM), ID)
    leaf = pki.load_certificates(chain_pem)[0]
    assert leaf.subject == x509.Name([])
    assert pki.uri_sans(leaf) == [ID.uri]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []


def test_ttl_is_configurable_and_capped_by_the_issuer(make_ca: MakeCA) -> None:
    ca = make_ca(workload_ttl=timedelta(hours=2))
    _, (leaf,), _ = _sign(ca)
    assert leaf.not_valid_after_utc == T0 + timedelta(hours=2)
    _, (leaf,), _ = _sign(ca, ttl=timedelta(minutes=5))
    assert leaf.not_valid_after_utc == T0 + timedelta(minutes=5)
    short = make_ca("short", root_ttl=timedelta(hours=1))
    _, (leaf,), _ = _sign(short)
    assert leaf.not_valid_after_utc == short.roots[0].not_valid_after_utc


def test_refuses_other_trust_domain_and_bad_csrs(make_ca: MakeCA) -> None:
    ca = make_ca()
    other = SpiffeId("example.org", "default", "x")
    with pytest.raises(IdentityError, match=r"example\.org"):
        _sign(ca, other)
    with pytest.raises(CsrError, match="not a PEM"):
        ca.sign_workload("garbage", ID)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(small, hashes.SHA256())
    )
    with pytest.raises(CsrError, match="1024 bits"):
        ca.sign_workload(csr.public_bytes(Encoding.PEM), ID)


def test_csr_signed_by_another_key_is_refused(make_ca: MakeCA) -> None:
    ca = make_ca()
    key, other = pki.generate_private_key(), pki.generate_private_key()
    der = x509.load_pem_x509_csr(pki.build_csr(key, ID).encode()).public_bytes(Encoding.DER)
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    swapped = other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert der.count(spki) == 1
    forged = x509.load_der_x509_csr(der.replace(spki, swapped)).public_bytes(Encoding.PEM)
    with pytest.raises(CsrError, match="not signed by the key it carries"):
        ca.sign_workload(forged, ID)


# -- plug-in CA ------------------------------------------------------------------------------


def _intermediate(
    root: x509.Certificate, root_key: pki.SigningKey, key: pki.SigningKey
) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cluster.local"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Intermediate CA"),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(pki.random_serial())
        .not_valid_before(T0 - timedelta(days=1))
        .not_valid_after(T0 + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )
        .sign(root_key, hashes.SHA256())
    )


def _write_cacerts(
    directory: Path, ca_key: pki.SigningKey | None = None
) -> tuple[x509.Certificate, x509.Certificate]:
    directory.mkdir(parents=True, exist_ok=True)
    root_key = pki.generate_private_key()
    root = build_root(
        root_key, "Root CA", T0 - timedelta(days=1), timedelta(days=3650), timedelta(0)
    )
    ca_key = ca_key or pki.generate_private_key()
    inter = _intermediate(root, root_key, ca_key)
    (directory / CA_CERT).write_text(pki.certificate_pem(inter))
    (directory / CA_KEY).write_text(pki.private_key_pem(ca_key))
    (directory / ROOT_CERT).write_text(pki.certificate_pem(root))
    (directory / CERT_CHAIN).write_text(pki.certificates_pem([inter, root]))
    return root, inter


@pytest.mark.parametrize("rsa_key", [False, True])
def test_plugin_ca_signs_with_its_intermediate(
    tmp_path: Path, manual_time: ManualTime, rsa_key: bool
) -> None:
    key = rsa.generate_private_key(65537, 2048) if rsa_key else None
    root, inter = _write_cacerts(tmp_path / "cacerts", key)
    ca = MeshCA.open(CASettings(tmp_path / "cacerts"), now=manual_time)
    assert ca.is_plugin
    _, chain, roots = _sign(ca)
    assert [c.serial_number for c in chain[1:]] == [inter.serial_number]
    assert chain[0].issuer == inter.subject
    assert [r.serial_number for r in roots] == [root.serial_number]
    assert verify_client(chain, roots, T0) == [ID.uri]
    with pytest.raises(RotationError, match="replacing its files"):
        ca.rotate_root()


def test_plugin_ca_errors_name_the_file(tmp_path: Path, manual_time: ManualTime) -> None:
    d = tmp_path / "cacerts"
    _write_cacerts(d)
    (d / CA_KEY).write_text(pki.private_key_pem(pki.generate_private_key()))
    with pytest.raises(CALoadError) as err:
        MeshCA.load_plugin(CASettings(d), d, now=manual_time)
    assert CA_KEY in str(err.value) and "does not match" in str(err.value)

    _write_cacerts(d)
    other_root, _ = _write_cacerts(tmp_path / "other")
    (d / ROOT_CERT).write_text(pki.certificate_pem(other_root))
    with pytest.raises(CALoadError) as err:
        MeshCA.load_plugin(CASettings(d), d, now=manual_time)
    assert CERT_CHAIN in str(err.value) and "does not lead to" in str(err.value)

    (d / ROOT_CERT).unlink()
    with pytest.raises(CALoadError, match=ROOT_CERT):
        MeshCA.load_plugin(CASettings(d), d, now=manual_time)


def test_plugin_ca_cert_must_be_a_ca(
    tmp_path: Path, manual_time: ManualTime, make_ca: MakeCA
) -> None:
    d = tmp_path / "cacerts"
    _write_cacerts(d)
    leaf_key, (leaf,), _ = _sign(make_ca())
    (d / CA_CERT).write_text(pki.certificate_pem(leaf))
    (d / CA_KEY).write_text(pki.private_key_pem(leaf_key))
    with pytest.raises(CALoadError, match="not a CA certificate"):
        MeshCA.load_plugin(CASettings(d), d, now=manual_time)


def test_self_signed_key_mismatch_is_reported(tmp_path: Path, make_ca: MakeCA) -> None:
    make_ca()
    (tmp_path / "ca" / ROOT_KEY).write_text(pki.private_key_pem(pki.generate_private_key()))
    with pytest.raises(CALoadError, match="does not match"):
        make_ca()


# -- rotation --------------------------------------------------------------------------------


def test_rotation_overlap_then_retirement(
    tmp_path: Path, make_ca: MakeCA, manual_time: ManualTime
) -> None:
    ca = make_ca()
    old_root = ca.roots[0]
    _, old_chain, _ = _sign(ca)
    manual_time.t = T0 + timedelta(hours=1)
    new_root = ca.rotate_root()
    bundle = pki.load_certificates(ca.trust_bundle())
    assert [r.serial_number for r in bundle] == [new_root.serial_number, old_root.serial_number]
    _, new_chain, roots_in_response = _sign(ca)
    assert new_chain[0].issuer == new_root.subject
    new_chain[0].verify_directly_issued_by(new_root)  # raises if not
    assert len(roots_in_response) == 2
    at = manual_time.t
    assert verify_client(old_chain, bundle, at) == [ID.uri]
    assert verify_client(new_chain, bundle, at) == [ID.uri]
    with pytest.raises(VerificationError):
        verify_client(old_chain, [new_root], at)

    reopened = make_ca()
    assert [r.serial_number for r in reopened.roots] == [r.serial_number for r in bundle]

    assert reopened.retire_old_roots() == 1
    assert [r.serial_number for r in reopened.roots] == [new_root.serial_number]
    assert [r.serial_number for r in make_ca().roots] == [new_root.serial_number]
    with pytest.raises(VerificationError):
        verify_client(old_chain, pki.load_certificates(reopened.trust_bundle()), at)


def test_interrupted_rotation_is_completed_on_open(tmp_path: Path, make_ca: MakeCA) -> None:
    make_ca()
    d = tmp_path / "ca"
    key = pki.generate_private_key()
    root = build_root(key, "cluster.local", T0, timedelta(days=10), timedelta(0))
    # Crash after the new key replaced the old one, before the new cert did.
    (d / ROOT_KEY).write_text(pki.private_key_pem(key))
    (d / (ROOT_CERT + ".next")).write_text(pki.certificate_pem(root))
    ca = make_ca()
    assert ca.roots[0].serial_number == root.serial_number
    assert not (d / (ROOT_CERT + ".next")).exists()
    assert os.stat(d / ROOT_CERT).st_size > 0


def test_signing_helpers_reject_unrelated_chains(make_ca: MakeCA) -> None:
    a, b = make_ca("a"), make_ca("b")
    _, chain, _ = _sign(a)
    with pytest.raises(ValueError, match="does not lead"):
        pki.verify_chain(chain, b.roots, T0)
    with pytest.raises(ValueError, match="not valid"):
        pki.verify_chain(chain, a.roots, T0 + timedelta(days=2))


def test_serving_certificate_for_the_control_plane(make_ca: MakeCA) -> None:
    ca = make_ca()
    serving = ca.issue_serving_certificate(["pilotfish.local", "127.0.0.1"])
    chain = pki.load_certificates(serving.cert_chain_pem)
    key = pki.load_private_key(serving.private_key_pem)
    assert pki.same_public_key(chain[0], key)
    roots = pki.load_certificates(serving.root_bundle_pem)
    for name in (
        x509.DNSName("pilotfish.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        verifier = PolicyBuilder().store(Store(roots)).time(T0).build_server_verifier(name)
        verifier.verify(chain[0], chain[1:])
    wrong = (
        PolicyBuilder()
        .store(Store(roots))
        .time(T0)
        .build_server_verifier(x509.DNSName("other.local"))
    )
    with pytest.raises(VerificationError):
        wrong.verify(chain[0], chain[1:])
    with pytest.raises(ValueError, match="at least one"):
        ca.issue_serving_certificate([])


def test_rotation_in_three_steps_never_signs_with_an_untrusted_root(
    tmp_path: Path, make_ca: MakeCA, manual_time: ManualTime
) -> None:
    ca = make_ca()
    old_root = ca.roots[0]
    _, before, _ = _sign(ca)
    # 1. add: the new root is trusted, the old one still signs.
    new_root = ca.add_root()
    assert ca.add_root() is new_root  # again: the same one
    assert ca.pending_root is new_root and ca.old_roots == []
    _, during, bundle_pem = _sign(ca)
    assert during[0].issuer == old_root.subject
    assert [r.serial_number for r in bundle_pem] == [old_root.serial_number, new_root.serial_number]
    with pytest.raises(RotationError, match="activate it"):
        ca.retire_old_roots()
    # The step survives a restart.
    reopened = make_ca()
    assert reopened.pending_root is not None
    assert reopened.pending_root.serial_number == new_root.serial_number
    # 2. activate: the new root signs; the old one stays trusted.
    assert reopened.activate_root().serial_number == new_root.serial_number
    assert reopened.pending_root is None
    assert [r.serial_number for r in reopened.old_roots] == [old_root.serial_number]
    _, after, bundle_pem = _sign(reopened)
    assert after[0].issuer == new_root.subject
    at = manual_time.t
    assert verify_client(before, bundle_pem, at) == [ID.uri]
    assert verify_client(after, bundle_pem, at) == [ID.uri]
    # 3. retire: only the new root is left, also after a restart.
    assert make_ca().retire_old_roots() == 1
    assert [r.serial_number for r in make_ca().roots] == [new_root.serial_number]
    assert not (tmp_path / "ca" / NEXT_ROOT_CERT).exists()


def test_activate_without_a_new_root_is_refused(make_ca: MakeCA) -> None:
    with pytest.raises(RotationError, match="add one first"):
        make_ca().activate_root()


def test_a_replica_follows_the_rotation_steps_taken_in_the_shared_directory(
    tmp_path: Path,
) -> None:
    settings = CASettings(tmp_path / "shared")
    taker = MeshCA.load_or_create_self_signed(settings)
    follower = MeshCA.load_or_create_self_signed(settings)

    def same() -> bool:
        return [r.fingerprint(hashes.SHA256()) for r in follower.roots] == [
            r.fingerprint(hashes.SHA256()) for r in taker.roots
        ] and follower.signing_certificate == taker.signing_certificate

    assert follower.follow_directory() is False  # nothing happened
    old = taker.signing_certificate
    new = taker.add_root()
    assert follower.follow_directory() is True and same()
    assert follower.pending_root == new and follower.signing_certificate == old
    # Half way through the other replica's activation (the new key, the old certificate):
    # left for the next call.
    (settings.directory / ROOT_KEY).write_bytes(
        (settings.directory / "next-root-key.pem").read_bytes()
    )
    assert follower.follow_directory() is False and follower.signing_certificate == old
    taker.activate_root()
    assert follower.follow_directory() is True and same()
    assert follower.signing_certificate == new and follower.pending_root is None
    assert len(follower.roots) == 2
    taker.retire_old_roots()
    assert follower.follow_directory() is True and same() and follower.roots == [new]
    assert follower.follow_directory() is False
