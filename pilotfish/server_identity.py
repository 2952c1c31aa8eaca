"""The control plane's identity parts: the mesh CA, workload tokens, the CA RPC, xDS TLS.

Opened once at start by the composition root (``server.py``):

- the mesh CA from ``ca_dir``: Istio's ``cacerts`` files there make it a plug-in CA
  (``ca-cert.pem``, ``ca-key.pem``, ``root-cert.pem``, ``cert-chain.pem``); otherwise a
  self-signed ECDSA P-256 root is created there at first start (``<data-dir>/ca`` by default);
- the token authority (HMAC key ``<data-dir>/ca/token-key``): workload tokens for one
  namespace and service account, issued through the API (``pilotfish token create``) and
  checked by the CA;
- the CA's ``CreateCertificate`` RPC, registered on the xDS gRPC server (same port);
- with ``xds_tls``: a serving certificate for the xDS port from the mesh CA (DNS SANs
  ``pilotfish.istio-system.svc``, ``istiod.istio-system.svc``, ``localhost``, this host's name;
  IP SANs for the listen address and ``127.0.0.1``), written to ``<data-dir>/xds-tls/`` for
  the gRPC server; agents verify it with the mesh root (``<ca dir>/root-cert.pem``).

Without ``xds_tls`` the port is plaintext (the default for a loopback or private-bridge
address): the CA RPC still signs only for the identity proven by a valid token, but tokens
then cross the wire in clear, so use TLS for agents on other hosts.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc

from pilotfish.identity import (
    CASettings,
    CertificateAuthorityService,
    MeshCA,
    TokenAuthority,
    add_to_server,
)
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
    trust_domain: str = "cluster.local"
    #: Serve xDS (and the CA RPC) over TLS with a certificate from the mesh CA.
    xds_tls: bool = False
    #: Address xDS listens on (its IP goes into the serving certificate).
    xds_host: str = "127.0.0.1"
    #: Extra DNS names or IPs for the serving certificate.
    xds_sans: tuple[str, ...] = ()

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "ca"


def serving_hosts(xds_host: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Names and IPs agents may dial for the xDS port."""
    hosts: list[str] = [*XDS_DNS_NAMES, "127.0.0.1"]
    try:
        ip = ipaddress.ip_address(xds_host)
        if not ip.is_unspecified:
            hosts.append(str(ip))
    except ValueError:
        if xds_host:
            hosts.append(xds_host)
    name = socket.gethostname()
    if name:
        hosts.append(name.lower())
    hosts += list(extra)
    return list(dict.fromkeys(hosts))


@dataclass(frozen=True)
class IssuedToken:
    token: str
    namespace: str
    service_account: str
    expires_at: datetime


class ControlPlaneIdentity:
    """The CA, the token authority and the signing service of one control plane."""

    def __init__(self, settings: IdentitySettings, ca: MeshCA, tokens: TokenAuthority) -> None:
        self.settings = settings
        self.ca = ca
        self.tokens = tokens
        self.service = CertificateAuthorityService(ca, tokens)

    @classmethod
    def open(cls, settings: IdentitySettings) -> ControlPlaneIdentity:
        ca_dir = settings.ca_dir or settings.state_dir
        ca = MeshCA.open(CASettings(ca_dir, trust_domain=settings.trust_domain))
        tokens = TokenAuthority.load_or_create(settings.state_dir)
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
        hosts = serving_hosts(self.settings.xds_host, self.settings.xds_sans)
        serving = self.ca.issue_serving_certificate(hosts, SERVING_CERT_TTL)
        directory = self.settings.data_dir / "xds-tls"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        cert, key = directory / "cert-chain.pem", directory / "key.pem"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(serving.private_key_pem)
        cert.write_text(serving.cert_chain_pem)
        log.info("xDS serves TLS for %s", ", ".join(hosts))
        return TlsSettings(cert_file=cert, key_file=key)

    def issue_token(
        self, namespace: str, service_account: str, ttl: timedelta | None = None
    ) -> IssuedToken:
        """A workload token (ValueError for bad names or TTL)."""
        ttl = DEFAULT_TOKEN_TTL if ttl is None else ttl
        if ttl <= timedelta(0) or ttl > MAX_TOKEN_TTL:
            raise ValueError(
                f"expirationSeconds must be between 1 and {int(MAX_TOKEN_TTL.total_seconds())}"
            )
        token = self.tokens.issue(namespace, service_account, ttl)
        claims = self.tokens.verify(token)
        log.info(
            "issued workload token %s for %s/%s until %s",
            claims.token_id,
            namespace,
            service_account,
            claims.expires_at.astimezone(UTC).isoformat(),
        )
        return IssuedToken(token, namespace, service_account, claims.expires_at)


__all__ = [
    "ControlPlaneIdentity",
    "IdentitySettings",
    "IssuedToken",
    "serving_hosts",
]
