"""The control plane's identity parts: the mesh CA, workload tokens, the CA RPC, xDS TLS.

Opened once at start by the composition root (``server.py``):

- the mesh CA from ``ca_dir``: Istio's ``cacerts`` files there make it a plug-in CA
  (``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem``, ``cert-chain.pem``); otherwise a
  self-signed ECDSA P-256 root is created there at first start (``<data-dir>/ca`` by default);
- the mesh roots as one file, ``<data-dir>/ca/mesh-roots.pem``: what agents pass as
  ``--ca-file`` to verify the xDS port;
- the token authority (HMAC key ``token-key``): workload tokens for one namespace and service
  account, issued through the API (``pilotfish token create``) and checked by the CA. The key
  lives next to the CA key: in the ``ca_dir`` given (``--ca-dir``) when it holds one, or when
  it is writable and the data directory holds none yet from an earlier start; in
  ``<data-dir>/ca`` otherwise. So control-plane replicas started with one shared CA directory
  sign with one CA and accept each other's tokens (see ``docs/high-availability.md``);
- the CA's ``CreateCertificate`` RPC, registered on the xDS gRPC server (same port);
- xDS TLS (the default): a serving certificate for the xDS port from the mesh CA, issued
  afresh at every start and written to ``<data-dir>/xds-tls/`` for the gRPC server. Its
  subject alternative names (see :func:`serving_hosts`): the DNS names
  ``pilotfish.istio-system.svc``, ``istiod.istio-system.svc``, ``localhost`` and this host's
  name; the IPs ``127.0.0.1`` and the listen address; for a wildcard listen address
  (``0.0.0.0``, ``::``) every address of this host at start instead; plus the extra names
  and IPs of ``xds_sans`` (``pilotfish server --xds-san``). An agent that dials a name or an
  address the certificate does not carry passes one of the DNS names as
  ``--xds-server-name``.

With ``xds_tls`` off (``pilotfish server --xds-plaintext``, for tests and trusted loopback
setups) the port is plaintext: the CA RPC still signs only for the identity proven by a valid
token, but tokens then cross the wire in clear.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from pilotfish.api.mesh import DEFAULT_TRUST_DOMAIN
from pilotfish.identity import (
    CASettings,
    CertificateAuthorityService,
    MeshCA,
    ServingCertificate,
    TokenAuthority,
    add_to_server,
)
from pilotfish.identity.errors import RotationError, TokenError
from pilotfish.identity.tokens import TOKEN_KEY_FILE, TokenClaims
from pilotfish.identity.trust_watch import fingerprint
from pilotfish.xds.settings import TlsSettings

log = logging.getLogger("pilotfish.server")

#: DNS names the xDS serving certificate always carries (Istio's names for its control plane).
XDS_DNS_NAMES = ("pilotfish.istio-system.svc", "istiod.istio-system.svc", "localhost")
DEFAULT_TOKEN_TTL = timedelta(hours=24)
MAX_TOKEN_TTL = timedelta(days=365)
SERVING_CERT_TTL = timedelta(days=365)


@dataclass(frozen=True)
class IdentitySettings:
    data_dir: Path
    #: CA files (plug-in ``cacerts`` or the self-signed root); ``<data_dir>/ca`` when None.
    ca_dir: Path | None = None
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: Serve xDS (and the CA RPC) over TLS with a certificate from the mesh CA.
    xds_tls: bool = True
    #: Address xDS listens on (its IP goes into the serving certificate).
    xds_host: str = "127.0.0.1"
    #: Extra DNS names or IPs for the serving certificate.
    xds_sans: tuple[str, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "ca"


def serving_hosts(
    xds_host: str, extra: tuple[str, ...] = (), host_addresses: Sequence[str] = ()
) -> list[str]:
    """Names and IPs agents may dial for the xDS port (the serving certificate's SANs).

    ``host_addresses`` (this host's IPs, see :func:`local_addresses`) stand in for a wildcard
    ``xds_host`` (``0.0.0.0``, ``::``); a specific address is taken as it is.
    """
    hosts: list[str] = [*XDS_DNS_NAMES, "127.0.0.1"]
    try:
        ip = ipaddress.ip_address(xds_host)
    except ValueError:
        if xds_host:
            hosts.append(xds_host.lower())
    else:
        hosts += [str(a) for a in _ips(host_addresses)] if ip.is_unspecified else [str(ip)]
    name = socket.gethostname()
    if name:
        hosts.append(name.lower())
    hosts += list(extra)
    return list(dict.fromkeys(hosts))


def _ips(texts: Sequence[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    out = []
    for text in texts:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not (ip.is_unspecified or ip.is_link_local or ip.is_multicast):
            out.append(ip)
    return out


def ipv4_local_addresses(fib_trie: str) -> list[str]:
    """This host's IPv4 addresses from ``/proc/net/fib_trie`` text (its ``/32 host LOCAL``
    entries)."""
    found: list[str] = []
    last = ""
    for line in fib_trie.splitlines():
        text = line.strip()
        if text.startswith("|-- "):
            last = text[4:].strip()
        elif text.startswith("/32 host LOCAL") and last:
            found.append(last)
    return list(dict.fromkeys(found))


def ipv6_local_addresses(if_inet6: str) -> list[str]:
    """This host's global and loopback IPv6 addresses from ``/proc/net/if_inet6`` text."""
    found: list[str] = []
    for line in if_inet6.splitlines():
        fields = line.split()
        if len(fields) < 4 or len(fields[0]) != 32 or fields[3] not in ("00", "10"):
            continue
        try:
            found.append(str(ipaddress.IPv6Address(int(fields[0], 16))))
        except ValueError:
            continue
    return list(dict.fromkeys(found))


def local_addresses(proc: Path = Path("/proc/net")) -> list[str]:
    """This host's IPv4 and IPv6 addresses now (Linux; empty where ``/proc`` lacks them)."""
    found: list[str] = []
    for name, parse in (("fib_trie", ipv4_local_addresses), ("if_inet6", ipv6_local_addresses)):
        try:
            found += parse((proc / name).read_text())
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class IssuedToken:
    token: str
    namespace: str
    service_account: str
    expires_at: datetime


#: The steps of a root rotation, in order (see :meth:`ControlPlaneIdentity.rotate_root`).
ROTATION_STEPS = ("add", "activate", "retire")


class ControlPlaneIdentity:
    """The CA, the token authority and the signing service of one control plane."""

    def __init__(self, settings: IdentitySettings, ca: MeshCA, tokens: TokenAuthority) -> None:
        self.settings = settings
        self.ca = ca
        self.tokens = tokens
        self.service = CertificateAuthorityService(ca, tokens)
        #: Serving certificates to re-issue when a new root signs: (files, hosts) of xDS and
        #: of the HTTP API (``--api-tls`` without a certificate of the user's own).
        self._serving: list[tuple[TlsSettings, list[str]]] = []
        #: Called with (cert, key) after the API's certificate was re-issued.
        self.on_api_certificate: list[Callable[[Path, Path], None]] = []
        #: Node ids of the proxies connected to xDS now (set by the composition root).
        self.connected_nodes: Callable[[], set[str]] = set

    # -- root rotation -----------------------------------------------------------------------

    def rotate_root(self, step: str) -> dict[str, Any]:
        """One step of a root rotation, as Istio's plug-in CA rotation, then the CA's status:

        - ``add``: a new root joins the trust bundle (``mesh-roots.pem`` and every agent's
          ROOTCA); the old one keeps signing;
        - ``activate``: the new root signs (workloads renew at once, the control plane's own
          serving certificates are re-issued under it); the old one is still trusted;
        - ``retire``: the old root leaves the trust bundle.

        Agents watching the trust bundle (``WatchTrustBundle``) hear of each step at once.
        Raises RotationError (plug-in CA, steps out of order) and ValueError (unknown step).
        """
        if step not in ROTATION_STEPS:
            raise ValueError(f"step: unknown {step!r}; one of {', '.join(ROTATION_STEPS)}")
        if step == "add":
            self.ca.add_root()
        elif step == "activate":
            if self.ca.pending_root is not None:
                self.ca.activate_root()
                self._reissue_serving_certificates()
            elif not self.ca.old_roots:
                raise RotationError("no new root to activate: run the add step first")
        else:
            if self.ca.pending_root is not None:
                raise RotationError(
                    "the new root does not sign yet: run the activate step before retiring "
                    "the old root"
                )
            self.ca.retire_old_roots()
        _ = self.root_cert_path  # rewrites mesh-roots.pem
        self.service.trust.changed()
        return self.ca_status()

    def ca_status(self) -> dict[str, Any]:
        """The roots (which signs, which is new, which is old), the rotation step reached and
        what every workload watching the trust bundle trusts and is signed by (``connected``:
        its proxy is connected to xDS; a rotation waits for those, and for those watching)."""
        ca = self.ca
        connected = self.connected_nodes()
        signing = ca.roots[0] if not ca.is_plugin else None
        pending = ca.pending_root
        roots = []
        for cert in ca.roots:
            if pending is not None and cert is pending:
                role = "added"
            elif cert is ca.roots[0]:
                role = "signing"
            else:
                role = "old"
            roots.append(
                {
                    "fingerprint": fingerprint(cert),
                    "serial": f"{cert.serial_number:x}",
                    "subject": cert.subject.rfc4514_string(),
                    "notAfter": cert.not_valid_after_utc.isoformat(),
                    "role": role,
                }
            )
        if ca.is_plugin:
            step = "plug-in"
        elif pending is not None:
            step = "added"
        elif ca.old_roots:
            step = "activated"
        else:
            step = "none"
        return {
            "kind": "MeshCA",
            "mode": "plug-in" if ca.is_plugin else "self-signed",
            "trustDomain": ca.trust_domain,
            "rotation": step,
            "signingRoot": fingerprint(signing) if signing is not None else "",
            "trustBundle": ca.trust_bundle(),
            "roots": roots,
            "workloads": [
                {
                    "node": w.node,
                    "identity": w.identity,
                    "trusts": list(w.trusts),
                    "signedBy": w.issuer,
                    "watching": w.watching,
                    "connected": w.node in connected,
                }
                for w in self.service.trust.workloads()
            ],
        }

    def follow_ca_directory(self) -> bool:
        """Take the root rotation steps another replica sharing the CA directory took: the new
        roots for this replica's agents (their trust bundle stream), its own serving
        certificates re-issued once a new root signs. True when a step was taken over."""
        signing = self.ca.signing_certificate
        if not self.ca.follow_directory():
            return False
        _ = self.root_cert_path  # rewrites mesh-roots.pem
        if self.ca.signing_certificate is not signing:
            self._reissue_serving_certificates()
        self.service.trust.changed()
        return True

    def _reissue_serving_certificates(self) -> None:
        for files, hosts in self._serving:
            serving = self.ca.issue_serving_certificate(hosts, SERVING_CERT_TTL)
            _write_pair(files.cert_file, files.key_file, serving)
            log.info("re-issued the serving certificate %s under the new root", files.cert_file)
            if files.cert_file.parent.name == "api-tls":
                for callback in self.on_api_certificate:
                    callback(files.cert_file, files.key_file)

    @classmethod
    def open(cls, settings: IdentitySettings) -> ControlPlaneIdentity:
        ca_dir = settings.ca_dir or settings.state_dir
        ca = MeshCA.open(CASettings(ca_dir, trust_domain=settings.trust_domain))
        tokens = TokenAuthority.load_or_create(token_key_dir(settings))
        mode = "plug-in" if ca.is_plugin else "self-signed"
        log.info("mesh CA (%s) from %s, trust domain %s", mode, ca_dir, ca.trust_domain)
        return cls(settings, ca, tokens)

    @property
    def root_cert_path(self) -> Path:
        """The mesh roots as a file (what agents pass as ``--ca-file``)."""
        path = self.settings.state_dir / "mesh-roots.pem"
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        bundle = self.ca.trust_bundle()
        if not path.exists() or path.read_text() != bundle:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(bundle)
            tmp.replace(path)
        return path

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the CA's CreateCertificate on the xDS gRPC server."""
        add_to_server(server, self.service)

    def xds_tls(self) -> TlsSettings | None:
        """Serving certificate files for the xDS port (None: plaintext)."""
        if not self.settings.xds_tls:
            return None
        wildcard = _is_unspecified(self.settings.xds_host)
        addresses = local_addresses() if wildcard else []
        hosts = serving_hosts(self.settings.xds_host, self.settings.xds_sans, addresses)
        serving = self.ca.issue_serving_certificate(hosts, SERVING_CERT_TTL)
        directory = self.settings.data_dir / "xds-tls"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = directory / "cert-chain.pem", directory / "key.pem"
        _write_pair(cert, key, serving)
        log.info("xDS serves TLS for %s", ", ".join(hosts))
        files = TlsSettings(cert_file=cert, key_file=key)
        self._serving.append((files, hosts))
        return files

    def verify_workload_token(self, token: str) -> tuple[str, str] | None:
        """The (namespace, service account) a workload token proves; None if it is not a
        valid one."""
        try:
            claims = self.tokens.verify(token)
        except (TokenError, ValueError):
            return None
        return claims.namespace, claims.service_account

    def workload_token_claims(self, token: str) -> TokenClaims:
        """The claims of a valid workload token; TokenError/ValueError saying what is wrong."""
        return self.tokens.verify(token)

    def api_tls(self, api_host: str, sans: tuple[str, ...]) -> TlsSettings:
        """A serving certificate from the mesh CA for the HTTP API (``--api-tls``): the same
        names as xDS's (see :func:`serving_hosts`) for ``api_host``. Clients verify it with
        the mesh roots (``root_cert_path``)."""
        wildcard = _is_unspecified(api_host)
        addresses = local_addresses() if wildcard else []
        hosts = serving_hosts(api_host, sans, addresses)
        serving = self.ca.issue_serving_certificate(hosts, SERVING_CERT_TTL)
        directory = self.settings.data_dir / "api-tls"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = directory / "cert-chain.pem", directory / "key.pem"
        _write_pair(cert, key, serving)
        log.info("the HTTP API serves TLS for %s", ", ".join(hosts))
        files = TlsSettings(cert_file=cert, key_file=key)
        self._serving.append((files, hosts))
        return files

    def issue_token(
        self,
        namespace: str,
        service_account: str,
        ttl: timedelta | None = None,
        workload_group: str = "",
    ) -> IssuedToken:
        """A workload token (ValueError for bad names or TTL); bound to the WorkloadGroup
        ``workload_group`` of ``namespace`` when given."""
        ttl = DEFAULT_TOKEN_TTL if ttl is None else ttl
        if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise ValueError(
                f"expirationSeconds must be between 1 and {int(MAX_TOKEN_TTL.total_seconds())}"
            )
        token = self.tokens.issue(namespace, service_account, ttl, workload_group)
        claims = self.tokens.verify(token)
        log.info(
            "issued workload token %s for %s/%s%s until %s",
            claims.token_id,
            namespace,
            service_account,
            f" bound to WorkloadGroup {workload_group}" if workload_group else "",
            claims.expires_at.astimezone(UTC).isoformat(),
        )
        return IssuedToken(token, namespace, service_account, claims.expires_at)


__all__ = [
    "ROTATION_STEPS",
    "ControlPlaneIdentity",
    "IdentitySettings",
    "IssuedToken",
    "local_addresses",
    "serving_hosts",
    "token_key_dir",
]


def token_key_dir(settings: IdentitySettings) -> Path:
    """Where the workload token key is (or is created): see the module docstring."""
    own = settings.state_dir
    shared = settings.ca_dir
    if shared is None:
        return own
    if (shared / TOKEN_KEY_FILE).exists():
        return shared
    if (own / TOKEN_KEY_FILE).exists():
        return own  # tokens issued before keep working
    return shared if os.access(shared, os.W_OK) else own


def _write_pair(cert: Path, key: Path, serving: ServingCertificate) -> None:
    """Replace a key and its certificate, each file atomically (readers check they match)."""
    for path, text, mode in ((key, serving.private_key_pem, 0o600),
                             (cert, serving.cert_chain_pem, 0o644)):  # fmt: skip
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(path)


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False
