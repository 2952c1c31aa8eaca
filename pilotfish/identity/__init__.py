"""Workload identity: the mesh CA, workload tokens, CSR signing, and the agent's secrets.

Control-plane side::

    ca = MeshCA.open(CASettings(data_dir / "ca"))              # self-signed or plug-in (cacerts)
    tokens = TokenAuthority.load_or_create(data_dir / "ca")    # HMAC key next to the CA key
    service = CertificateAuthorityService(ca, tokens)
    add_to_server(grpc_aio_server, service)                     # CreateCertificate on 15012
    serving = ca.issue_serving_certificate(["pilotfish.local", "127.0.0.1"])   # 15012's TLS
    token = tokens.issue("default", "bookinfo-reviews", timedelta(days=1))   # for a sidecar

Agent side::

    channel = grpc.aio.secure_channel("cp:15012", credentials)
    manager = SecretManager(SecretManagerSettings(identity), grpc_fetcher(channel, token))
    sds = SdsServer(SdsSettings(socket_path, owner_uid=1337), manager)
    await manager.start(); await sds.start()

Modules: ``spiffe`` (IDs), ``pki`` (X.509 helpers), ``ca``, ``tokens``, ``csr_service``
(the signing decision), ``ca_grpc`` (transport), ``secret_manager``, ``sds_protocol`` and
``sds_server`` (Envoy SDS), ``errors``.
"""

from typing import TYPE_CHECKING

from pilotfish.lazy import lazy_exports

if TYPE_CHECKING:
    from pilotfish.identity.ca import CASettings, MeshCA, ServingCertificate, WorkloadCertificate
    from pilotfish.identity.ca_grpc import add_to_server, grpc_fetcher, request_certificate
    from pilotfish.identity.certificate import SignedCertificate
    from pilotfish.identity.csr_service import CertificateAuthorityService, SigningPolicy
    from pilotfish.identity.errors import (
        CALoadError,
        CertificateRequestError,
        CsrError,
        IdentityError,
        IdentityMismatchError,
        InvalidSpiffeIdError,
        TokenError,
    )
    from pilotfish.identity.sds_protocol import DEFAULT_SECRET, ROOT_SECRET, SECRET_TYPE
    from pilotfish.identity.sds_server import SdsServer, SdsSettings
    from pilotfish.identity.secret_manager import (
        CertificateFetcher,
        SecretManager,
        SecretManagerSettings,
        WorkloadSecret,
        token_from_file,
    )
    from pilotfish.identity.spiffe import SpiffeId
    from pilotfish.identity.tokens import TokenAuthority, TokenClaims

#: Where each exported name lives: a module is imported on first use, so the sidecar agent
#: (secret manager, SDS server, CA client) never loads the CA, the token authority or the
#: signing service of the control plane.
_WHERE = {
    "CASettings": "ca",
    "MeshCA": "ca",
    "ServingCertificate": "ca",
    "WorkloadCertificate": "ca",
    "add_to_server": "ca_grpc",
    "grpc_fetcher": "ca_grpc",
    "request_certificate": "ca_grpc",
    "CertificateAuthorityService": "csr_service",
    "SigningPolicy": "csr_service",
    "SignedCertificate": "certificate",
    "CALoadError": "errors",
    "CertificateRequestError": "errors",
    "CsrError": "errors",
    "IdentityError": "errors",
    "IdentityMismatchError": "errors",
    "InvalidSpiffeIdError": "errors",
    "TokenError": "errors",
    "DEFAULT_SECRET": "sds_protocol",
    "ROOT_SECRET": "sds_protocol",
    "SECRET_TYPE": "sds_protocol",
    "SdsServer": "sds_server",
    "SdsSettings": "sds_server",
    "CertificateFetcher": "secret_manager",
    "SecretManager": "secret_manager",
    "SecretManagerSettings": "secret_manager",
    "WorkloadSecret": "secret_manager",
    "token_from_file": "secret_manager",
    "SpiffeId": "spiffe",
    "TokenAuthority": "tokens",
    "TokenClaims": "tokens",
}

__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "DEFAULT_SECRET",
    "ROOT_SECRET",
    "SECRET_TYPE",
    "CALoadError",
    "CASettings",
    "CertificateAuthorityService",
    "CertificateFetcher",
    "CertificateRequestError",
    "CsrError",
    "IdentityError",
    "IdentityMismatchError",
    "InvalidSpiffeIdError",
    "MeshCA",
    "SdsServer",
    "SdsSettings",
    "SecretManager",
    "SecretManagerSettings",
    "ServingCertificate",
    "SignedCertificate",
    "SigningPolicy",
    "SpiffeId",
    "TokenAuthority",
    "TokenClaims",
    "TokenError",
    "WorkloadCertificate",
    "WorkloadSecret",
    "add_to_server",
    "grpc_fetcher",
    "request_certificate",
    "token_from_file",
]
