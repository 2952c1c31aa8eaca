"""Small X.509 helpers shared by the CA and the agent (pure, no files).

Keys the mesh creates are ECDSA P-256. Certificates are read and written as PEM text. The
helpers here build CSRs, load PEM bundles, read SPIFFE URI SANs and check that a workload
chain leads to one of the trusted roots.
"""

from __future__ import annotations

import itertools
import secrets
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from pilotfish.identity.errors import CsrError
from pilotfish.identity.spiffe import SpiffeId

#: Private keys a CA may sign with (a plug-in CA can bring RSA).
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_ACCEPTED_CURVES = (ec.SECP256R1, ec.SECP384R1)
_MIN_RSA_BITS = 2048


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: SigningKey) -> str:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_private_key(pem: str | bytes) -> SigningKey:
    """An unencrypted PEM private key (ECDSA or RSA); ValueError otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{type(key).__name__} keys are not supported (ECDSA, RSA)")
    return key


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def certificates_pem(certs: list[x509.Certificate]) -> str:
    return "".join(certificate_pem(c) for c in certs)


def load_certificates(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order. Raises ValueError if there is none."""
    data = pem.encode() if isinstance(pem, str) else pem
    return list(x509.load_pem_x509_certificates(data))


def random_serial() -> int:
    """A positive serial of 159 random bits (RFC 5280: at most 20 octets)."""
    return secrets.randbits(159) | 1


def build_csr(key: ec.EllipticCurvePrivateKey, identity: SpiffeId) -> str:
    """A PEM CSR asking for ``identity`` as its only (URI) subjectAltName, with an empty subject."""
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
            critical=True,
        )
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def load_csr(csr_pem: str | bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR, check its self-signature and key type; raise CsrError if unusable."""
    data = csr_pem.encode() if isinstance(csr_pem, str) else csr_pem
    try:
        csr = x509.load_pem_x509_csr(data)
    except ValueError as e:
        raise CsrError("", f"not a PEM certificate signing request ({e})") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature):
        valid = False
    if not valid:
        raise CsrError("signature", "the request is not signed by the key it carries")
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, _ACCEPTED_CURVES):
            raise CsrError("public key", f"curve {key.curve.name} is not accepted (use P-256)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < _MIN_RSA_BITS:
            raise CsrError("public key", f"RSA key of {key.key_size} bits is too small")
    else:
        raise CsrError("public key", f"{type(key).__name__} keys are not accepted (use P-256)")
    return csr


def uri_sans(obj: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    """The URI subjectAltNames of a certificate or CSR (empty if it has no SAN extension)."""
    try:
        san = obj.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    assert isinstance(san.value, x509.SubjectAlternativeName)
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def same_public_key(cert: x509.Certificate, key: SigningKey) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return bool(cert.public_key().public_bytes(der, fmt) == key.public_key().public_bytes(der, fmt))


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(
    chain: list[x509.Certificate], roots: list[x509.Certificate], at: datetime
) -> x509.Certificate:
    """Check that ``chain`` (leaf first, then intermediates) leads to one of ``roots`` at ``at``.

    Every link is checked by signature and validity period; the root that anchors the chain is
    returned. Raises ValueError naming the broken link.
    """
    if not chain:
        raise ValueError("empty certificate chain")
    path = list(chain)
    for cert in path:
        _check_validity(cert, at)
    for child, parent in itertools.pairwise(path):
        if not _signed_by(child, parent):
            raise ValueError(f"certificate {child.serial_number:x} is not signed by the next one")
    last = path[-1]
    for root in roots:
        same = last.fingerprint(hashes.SHA256()) == root.fingerprint(hashes.SHA256())
        if same or _signed_by(last, root):
            _check_validity(root, at)
            return root
    raise ValueError("the chain does not lead to any trusted root")


def _check_validity(cert: x509.Certificate, at: datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise ValueError(f"certificate {cert.serial_number:x} is not valid at {at.isoformat()}")
