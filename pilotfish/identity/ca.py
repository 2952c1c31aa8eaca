"""The mesh certificate authority: its root(s), workload certificate signing, root rotation.

Two modes, chosen by what the CA directory holds (see :meth:`MeshCA.open`):

- **self-signed** (the default): at first start a root is created in the directory
  (``root-cert.pem``, ``root-key.pem`` mode 0600; ECDSA P-256, ten years, subject
  ``O=<trust domain>``) and signs workload certificates directly;
- **plug-in**, as Istio's ``cacerts``: ``ca-cert.pem`` + ``ca-key.pem`` (an intermediate that
  signs), ``root-cert.pem`` (one or more trusted roots) and ``cert-chain.pem`` (``ca-cert``
  up to the root). Workload chains carry the intermediates.

Workload certificates carry the SPIFFE URI SAN and nothing else the CSR asked for: the caller
proves the identity (:mod:`pilotfish.identity.csr_service`), the CA only signs. Leaves are
valid from one minute in the past (clock skew) for 24 h by default, never past their issuer.

Root rotation (self-signed mode), in Istio's three steps so that no workload ever meets a
certificate it cannot verify:

1. :meth:`MeshCA.add_root` makes a new root (``next-root-cert.pem``, ``next-root-key.pem``) and
   adds it to the trust bundle; the old root still signs. Every workload must get the
   two-root bundle before the next step;
2. :meth:`MeshCA.activate_root` makes the new root sign every later certificate; the old one
   stays in the trust bundle (``previous-roots.pem``). Every workload must be re-issued;
3. :meth:`MeshCA.retire_old_roots` drops the old root from the trust bundle.

:meth:`MeshCA.rotate_root` does the first two at once (for a mesh with no running workload).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilotfish.identity import pki
from pilotfish.identity.errors import CALoadError, IdentityError, RotationError
from pilotfish.identity.spiffe import DEFAULT_TRUST_DOMAIN, SpiffeId

log = logging.getLogger("pilotfish.identity")

ROOT_CERT = "root-cert.pem"
ROOT_KEY = "root-key.pem"
PREVIOUS_ROOTS = "previous-roots.pem"
NEXT_ROOT_CERT = "next-root-cert.pem"
NEXT_ROOT_KEY = "next-root-key.pem"
CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
CERT_CHAIN = "cert-chain.pem"
_NEXT = ".next"

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CASettings:
    """Where the CA keeps its files and how long what it makes lives."""

    directory: Path
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: ``O=`` of a created root; the trust domain when empty.
    organization: str = ""
    root_ttl: timedelta = timedelta(days=3650)
    workload_ttl: timedelta = timedelta(hours=24)
    #: Leaves and roots start this long before "now" to tolerate clock skew.
    backdate: timedelta = timedelta(minutes=1)


class WorkloadCertificate(NamedTuple):
    """What :meth:`MeshCA.sign_workload` returns: the leaf + intermediates, and the trust bundle."""

    cert_chain_pem: str
    root_bundle_pem: str


class ServingCertificate(NamedTuple):
    """A server's certificate chain, its private key and the trust bundle (PEM)."""

    cert_chain_pem: str
    private_key_pem: str
    root_bundle_pem: str


def _hash_for(key: pki.SigningKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def _write_atomic(path: Path, data: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CALoadError(str(path), e.strerror or str(e)) from None


def _load_certs(path: Path) -> list[x509.Certificate]:
    try:
        return pki.load_certificates(_read(path))
    except ValueError as e:
        raise CALoadError(str(path), f"no PEM certificate could be read ({e})") from None


def _load_key(path: Path) -> pki.SigningKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as e:
        raise CALoadError(str(path), f"not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CALoadError(str(path), f"{type(key).__name__} keys are not supported (ECDSA, RSA)")
    return key


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return bool(bc.ca)


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _fingerprint(cert: x509.Certificate) -> bytes:
    return cert.fingerprint(hashes.SHA256())


def build_root(
    key: ec.EllipticCurvePrivateKey,
    organization: str,
    now: datetime,
    ttl: timedelta,
    backdate: timedelta,
) -> x509.Certificate:
    """A self-signed root: CA, keyCertSign/cRLSign, subject ``O=<organization>``."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(pki.random_serial())
        .not_valid_before(now - backdate)
        .not_valid_after(now + ttl)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )
    return builder.sign(key, _hash_for(key))


def host_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """subjectAltNames for host names and IP literals."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def build_leaf(
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    names: Sequence[x509.GeneralName],
    issuer: x509.Certificate,
    issuer_key: pki.SigningKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """A leaf: empty subject, ``names`` as its only (critical) SANs, not a CA."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(pki.random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(list(names)),
            critical=True,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, _hash_for(issuer_key))


class MeshCA:
    """Signs workload certificates; owns the trust bundle. Thread-safe."""

    def __init__(
        self,
        settings: CASettings,
        *,
        signing_cert: x509.Certificate,
        signing_key: pki.SigningKey,
        intermediates: list[x509.Certificate],
        roots: list[x509.Certificate],
        plugin: bool,
        now: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self._signing_cert = signing_cert
        self._signing_key = signing_key
        self._intermediates = list(intermediates)
        self._roots = list(roots)
        self._plugin = plugin
        self._now = now
        self._lock = threading.RLock()
        #: A root added to the trust bundle that does not sign yet (step 1 of a rotation).
        self._pending: tuple[x509.Certificate, pki.SigningKey] | None = None

    # -- opening -----------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: CASettings, *, now: Clock = utc_now) -> MeshCA:
        """Plug-in CA if the directory holds ``ca-cert.pem``, else the self-signed root
        (created on first start)."""
        directory = settings.directory
        if (directory / CA_CERT).exists():
            return cls.load_plugin(settings, directory, now=now)
        return cls.load_or_create_self_signed(settings, now=now)

    @classmethod
    def load_or_create_self_signed(cls, settings: CASettings, *, now: Clock = utc_now) -> MeshCA:
        directory = settings.directory
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cls._finish_pending_rotation(directory)
        cert_path, key_path = directory / ROOT_CERT, directory / ROOT_KEY
        if not cert_path.exists() and not key_path.exists():
            key = pki.generate_private_key()
            org = settings.organization or settings.trust_domain
            root = build_root(key, org, now(), settings.root_ttl, settings.backdate)
            _write_atomic(key_path, pki.private_key_pem(key), 0o600)
            _write_atomic(cert_path, pki.certificate_pem(root), 0o644)
            log.info("created mesh root CA in %s (serial %x)", directory, root.serial_number)
        root = _load_certs(cert_path)[0]
        signing_key = _load_key(key_path)
        if not pki.same_public_key(root, signing_key):
            raise CALoadError(str(key_path), f"does not match the certificate in {cert_path}")
        if key_path.stat().st_mode & 0o077:
            log.warning("%s is readable by other users; it should be mode 0600", key_path)
        previous: list[x509.Certificate] = []
        if (directory / PREVIOUS_ROOTS).exists():
            previous = [
                c
                for c in _load_certs(directory / PREVIOUS_ROOTS)
                if _fingerprint(c) != _fingerprint(root)
            ]
        pending: tuple[x509.Certificate, pki.SigningKey] | None = None
        if (directory / NEXT_ROOT_CERT).exists():
            next_cert = _load_certs(directory / NEXT_ROOT_CERT)[0]
            next_key = _load_key(directory / NEXT_ROOT_KEY)
            if not pki.same_public_key(next_cert, next_key):
                raise CALoadError(
                    str(directory / NEXT_ROOT_KEY), f"does not match {NEXT_ROOT_CERT}"
                )
            pending = (next_cert, next_key)
            previous = [c for c in previous if _fingerprint(c) != _fingerprint(next_cert)]
        ca = cls(
            settings,
            signing_cert=root,
            signing_key=signing_key,
            intermediates=[],
            roots=[root, *([pending[0]] if pending else []), *previous],
            plugin=False,
            now=now,
        )
        ca._pending = pending
        return ca

    @classmethod
    def load_plugin(cls, settings: CASettings, certs_dir: Path, *, now: Clock = utc_now) -> MeshCA:
        """A user-provided CA from Istio's ``cacerts`` files in ``certs_dir``."""
        ca_cert_path = certs_dir / CA_CERT
        ca_cert = _load_certs(ca_cert_path)[0]
        ca_key = _load_key(certs_dir / CA_KEY)
        if not pki.same_public_key(ca_cert, ca_key):
            raise CALoadError(str(certs_dir / CA_KEY), f"does not match {ca_cert_path}")
        if not _is_ca(ca_cert):
            raise CALoadError(str(ca_cert_path), "is not a CA certificate (basicConstraints)")
        roots = _load_certs(certs_dir / ROOT_CERT)
        chain_path = certs_dir / CERT_CHAIN
        chain = _load_certs(chain_path) if chain_path.exists() else [ca_cert]
        if _fingerprint(chain[0]) != _fingerprint(ca_cert):
            raise CALoadError(str(chain_path), f"must start with the certificate of {CA_CERT}")
        intermediates = [c for c in chain if not _self_signed(c)]
        try:
            pki.verify_chain(intermediates or [ca_cert], roots, now())
        except ValueError as e:
            raise CALoadError(str(chain_path), f"does not lead to {ROOT_CERT}: {e}") from None
        return cls(
            settings,
            signing_cert=ca_cert,
            signing_key=ca_key,
            intermediates=intermediates if not _self_signed(ca_cert) else [],
            roots=roots,
            plugin=True,
            now=now,
        )

    @staticmethod
    def _finish_pending_rotation(directory: Path) -> None:
        """Complete a rotation interrupted between writing the new key and the new cert."""
        cert_next = directory / (ROOT_CERT + _NEXT)
        key_next = directory / (ROOT_KEY + _NEXT)
        if not cert_next.exists():
            key_next.unlink(missing_ok=True)
            return
        cert = _load_certs(cert_next)[0]
        key_path = key_next if key_next.exists() else directory / ROOT_KEY
        if pki.same_public_key(cert, _load_key(key_path)):
            if key_next.exists():
                os.replace(key_next, directory / ROOT_KEY)
            os.replace(cert_next, directory / ROOT_CERT)
        else:
            cert_next.unlink()
            key_next.unlink(missing_ok=True)

    # -- reading -----------------------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        return self.settings.trust_domain

    @property
    def is_plugin(self) -> bool:
        return self._plugin

    @property
    def signing_certificate(self) -> x509.Certificate:
        with self._lock:
            return self._signing_cert

    @property
    def roots(self) -> list[x509.Certificate]:
        """Trusted roots, the one currently signing (directly or via intermediates) first."""
        with self._lock:
            return list(self._roots)

    def trust_bundle(self) -> str:
        """PEM of every trusted root (several during a rotation overlap)."""
        return pki.certificates_pem(self.roots)

    # -- signing -----------------------------------------------------------------------------

    def sign_workload(
        self, csr_pem: str | bytes, identity: SpiffeId, ttl: timedelta | None = None
    ) -> WorkloadCertificate:
        """Sign the CSR's public key for ``identity`` (the CSR's own names are ignored).

        Returns the chain (leaf, then intermediates of a plug-in CA) and the trust bundle.
        Raises CsrError for an unusable CSR and IdentityError for another trust domain.
        """
        if identity.trust_domain != self.trust_domain:
            raise IdentityError(
                f"{identity}: trust domain {identity.trust_domain!r} is not this CA's "
                f"({self.trust_domain!r})"
            )
        ttl = self.settings.workload_ttl if ttl is None else ttl
        if ttl <= timedelta(0):
            raise ValueError(f"certificate TTL must be positive, got {ttl}")
        csr = pki.load_csr(csr_pem)
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
        now = self._now()
        with self._lock:
            issuer, issuer_key = self._signing_cert, self._signing_key
            chain, bundle = list(self._intermediates), pki.certificates_pem(self._roots)
        ceiling = min(c.not_valid_after_utc for c in [issuer, *chain])
        not_after = min(now + ttl, ceiling)
        san = [x509.UniformResourceIdentifier(identity.uri)]
        leaf = build_leaf(
            public_key, san, issuer, issuer_key, now - self.settings.backdate, not_after
        )
        return WorkloadCertificate(pki.certificates_pem([leaf, *chain]), bundle)

    def issue_serving_certificate(
        self, hosts: Sequence[str], ttl: timedelta | None = None
    ) -> ServingCertificate:
        """A key and certificate for the control plane's own TLS endpoints (15012).

        ``hosts`` are DNS names and IP literals the agents dial; the key is made here, for a
        server in the same process as the CA. Agents verify it with :meth:`trust_bundle`.
        """
        if not hosts:
            raise ValueError("a serving certificate needs at least one host name or IP")
        ttl = self.settings.workload_ttl if ttl is None else ttl
        key = pki.generate_private_key()
        now = self._now()
        with self._lock:
            issuer, issuer_key = self._signing_cert, self._signing_key
            chain, bundle = list(self._intermediates), pki.certificates_pem(self._roots)
        not_after = min(now + ttl, *(c.not_valid_after_utc for c in [issuer, *chain]))
        leaf = build_leaf(
            key.public_key(),
            host_names(hosts),
            issuer,
            issuer_key,
            now - self.settings.backdate,
            not_after,
        )
        return ServingCertificate(
            pki.certificates_pem([leaf, *chain]), pki.private_key_pem(key), bundle
        )

    # -- rotation ----------------------------------------------------------------------------

    @property
    def pending_root(self) -> x509.Certificate | None:
        """The root added by :meth:`add_root` that does not sign yet."""
        with self._lock:
            return self._pending[0] if self._pending else None

    @property
    def old_roots(self) -> list[x509.Certificate]:
        """Roots still trusted that neither sign nor are about to (retired by
        :meth:`retire_old_roots`)."""
        with self._lock:
            pending = self._pending[0] if self._pending else None
            return [c for c in self._roots[1:] if c is not pending]

    def _self_signed_only(self, what: str) -> None:
        if self._plugin:
            raise RotationError(
                f"{what}: a plug-in CA is rotated by replacing its files "
                f"({CA_CERT}, {CA_KEY}, {ROOT_CERT} holding both roots, {CERT_CHAIN}) and "
                "restarting"
            )

    def add_root(self) -> x509.Certificate:
        """Step 1: a new root joins the trust bundle; the current one keeps signing. Returns
        the new root (the one already added when called again)."""
        self._self_signed_only("add a root")
        directory = self.settings.directory
        with self._lock:
            if self._pending is not None:
                return self._pending[0]
            key = pki.generate_private_key()
            org = self.settings.organization or self.trust_domain
            root = build_root(key, org, self._now(), self.settings.root_ttl, self.settings.backdate)
            _write_atomic(directory / NEXT_ROOT_KEY, pki.private_key_pem(key), 0o600)
            _write_atomic(directory / NEXT_ROOT_CERT, pki.certificate_pem(root), 0o644)
            self._pending = (root, key)
            self._roots = [self._roots[0], root, *self._roots[1:]]
        log.info("added a new mesh root (serial %x) to the trust bundle; the current root "
                 "still signs", root.serial_number)  # fmt: skip
        return root

    def activate_root(self) -> x509.Certificate:
        """Step 2: the root added by :meth:`add_root` signs from now on; the old one stays
        trusted. Returns it (the current root when called again)."""
        self._self_signed_only("activate a root")
        directory = self.settings.directory
        with self._lock:
            if self._pending is None:
                if self.old_roots:
                    return self._signing_cert
                raise RotationError("no new root to activate: add one first")
            root, key = self._pending
            old = [c for c in self._roots if c is not root]
            _write_atomic(directory / PREVIOUS_ROOTS, pki.certificates_pem(old), 0o644)
            _write_atomic(directory / (ROOT_KEY + _NEXT), pki.private_key_pem(key), 0o600)
            _write_atomic(directory / (ROOT_CERT + _NEXT), pki.certificate_pem(root), 0o644)
            os.replace(directory / (ROOT_KEY + _NEXT), directory / ROOT_KEY)
            os.replace(directory / (ROOT_CERT + _NEXT), directory / ROOT_CERT)
            (directory / NEXT_ROOT_CERT).unlink(missing_ok=True)
            (directory / NEXT_ROOT_KEY).unlink(missing_ok=True)
            self._signing_cert, self._signing_key = root, key
            self._roots = [root, *old]
            self._pending = None
        log.info("mesh root %x signs from now on; %d old root(s) still trusted",
                 root.serial_number, len(old))  # fmt: skip
        return root

    def rotate_root(self) -> x509.Certificate:
        """Steps 1 and 2 at once: a new root that signs from now on while the old one stays
        trusted. Only safe when no workload runs (they could not verify each other)."""
        self.add_root()
        return self.activate_root()

    def follow_directory(self) -> bool:
        """Take the rotation steps another control-plane replica sharing this CA directory
        took (its files are the truth): the signing root and key, the added root, the old
        roots still trusted. True when something changed. Reads only; a state caught half
        written by the other replica (a key that does not match its certificate) is left for
        the next call. Self-signed CAs only (a plug-in CA is rotated by a restart)."""
        if self._plugin:
            return False
        directory = self.settings.directory
        with self._lock:  # never between the writes of a step taken by this replica
            try:
                root = _load_certs(directory / ROOT_CERT)[0]
                key = _load_key(directory / ROOT_KEY)
                if not pki.same_public_key(root, key):
                    return False  # another replica is half way through activating
                pending: tuple[x509.Certificate, pki.SigningKey] | None = None
                if (directory / NEXT_ROOT_CERT).exists() and (directory / NEXT_ROOT_KEY).exists():
                    next_cert = _load_certs(directory / NEXT_ROOT_CERT)[0]
                    next_key = _load_key(directory / NEXT_ROOT_KEY)
                    if not pki.same_public_key(next_cert, next_key):
                        return False
                    if _fingerprint(next_cert) != _fingerprint(root):  # else: being activated
                        pending = (next_cert, next_key)
                previous: list[x509.Certificate] = []
                if (directory / PREVIOUS_ROOTS).exists():
                    previous = _load_certs(directory / PREVIOUS_ROOTS)
            except (OSError, ValueError, IdentityError) as exc:
                log.debug("CA directory %s not followed this time: %s", directory, exc)
                return False
            added = [pending[0]] if pending else []
            skip = {_fingerprint(c) for c in (root, *added)}
            roots = [root, *added]
            for cert in previous:
                if _fingerprint(cert) not in skip:
                    skip.add(_fingerprint(cert))
                    roots.append(cert)
            now = [_fingerprint(c) for c in roots]
            if now == [_fingerprint(c) for c in self._roots] and _fingerprint(root) == _fingerprint(
                self._signing_cert
            ):
                return False
            self._signing_cert, self._signing_key = root, key
            self._roots = roots
            self._pending = pending
        log.info("mesh roots follow the CA directory %s: root %x signs, %d root(s) trusted",
                 directory, root.serial_number, len(roots))  # fmt: skip
        return True

    def retire_old_roots(self) -> int:
        """Step 3: stop trusting every root but the current one. Returns how many were
        dropped."""
        if self._plugin:
            raise RotationError(f"the roots of a plug-in CA come from its {ROOT_CERT}")
        with self._lock:
            if self._pending is not None:
                raise RotationError(
                    "a new root was added but does not sign yet: activate it before retiring "
                    "the current one"
                )
            dropped = len(self._roots) - 1
            self._roots = self._roots[:1]
            (self.settings.directory / PREVIOUS_ROOTS).unlink(missing_ok=True)
        if dropped:
            log.info("retired %d old mesh root(s)", dropped)
        return dropped
