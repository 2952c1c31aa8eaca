"""TLS building blocks: mesh mTLS (ISTIO_MUTUAL), DestinationRule ``tls``, gateway credentials.

Where certificates come from (Envoy SDS, by Istio's names):

- the workload's own certificate ``default`` and the mesh roots ``ROOTCA`` from the proxy's
  agent, through the static ``sds-grpc`` cluster of its bootstrap (a Unix socket); only proxies
  that have a workload identity have that cluster, so nothing here refers to it otherwise;
- gateway and DestinationRule credentials (``credentialName``) from the control plane over ADS,
  as ``kubernetes://<name>`` (certificate and key) and ``kubernetes://<name>-cacert`` (CA)
  (:mod:`pilotfish.api.credentials`). Translation only names them: the xDS secrets generator
  (``pilotfish.xds.secrets``) builds them from the stored Secrets; translation never reads
  a Secret.

A proxy has a workload identity when its labels carry ``security.istio.io/tlsMode: istio``
(the agent adds it when it runs with a workload token, as Istio's injector labels pods), and an
endpoint speaks mesh mTLS when its workload has that label: clusters then pick the transport
socket per endpoint with ``transport_socket_matches`` on the endpoint metadata
``envoy.transport_socket_match: {tlsMode: istio}``, so one cluster can mix meshed and plain
endpoints (auto mTLS).

Mesh mTLS pins TLS 1.3 on the client (Envoy's upstream default maximum is 1.2, so both bounds
are set), verifies the server's SPIFFE URI SAN against the destination's service accounts and
offers ALPN ``istio-peer-exchange``/``istio`` so PERMISSIVE servers tell it from plaintext.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from pilotfish.api.credentials import credential_resource_names
from pilotfish.api.destinationrule import ClientTLSSettings
from pilotfish.api.networking import ServerTLSSettings
from pilotfish.api.node import DEFAULT_SYSTEM_ROOTS
from pilotfish.translate.common import duration, pack

TLS_MODE_LABEL = "security.istio.io/tlsMode"
TLS_MODE_ISTIO = "istio"
#: Static cluster of the agent's SDS server in the bootstrap (Istio's name).
SDS_CLUSTER = "sds-grpc"
WORKLOAD_SECRET = "default"
ROOT_SECRET = "ROOTCA"
TLS_SOCKET = "envoy.transport_sockets.tls"
RAW_SOCKET = "envoy.transport_sockets.raw_buffer"
#: Endpoint metadata namespace that ``transport_socket_matches`` reads.
SOCKET_MATCH_KEY = "envoy.transport_socket_match"
#: ALPN a mesh client offers; PERMISSIVE servers pick their mTLS chain by it.
MESH_CLIENT_ALPN = ("istio-peer-exchange", "istio")
MESH_SERVER_ALPN = ("istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")

TLS = common_pb2.TlsParameters

_VERSIONS = {
    "TLS_AUTO": TLS.TLS_AUTO,
    "TLSV1_0": TLS.TLSv1_0,
    "TLSV1_1": TLS.TLSv1_1,
    "TLSV1_2": TLS.TLSv1_2,
    "TLSV1_3": TLS.TLSv1_3,
}


def has_workload_identity(labels: Mapping[str, str]) -> bool:
    """True when a proxy (or endpoint) with these labels has a mesh certificate."""
    return labels.get(TLS_MODE_LABEL) == TLS_MODE_ISTIO


def spiffe_uri(trust_domain: str, namespace: str, service_account: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


# ---- secret sources --------------------------------------------------------------------------


def agent_sds_source() -> config_source_pb2.ConfigSource:
    """SDS from the proxy's agent over the ``sds-grpc`` cluster."""
    api = config_source_pb2.ApiConfigSource(
        api_type=config_source_pb2.ApiConfigSource.GRPC,
        transport_api_version=config_source_pb2.V3,
        set_node_on_first_message_only=True,
        grpc_services=[
            grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=SDS_CLUSTER)
            )
        ],
    )
    return config_source_pb2.ConfigSource(
        api_config_source=api,
        resource_api_version=config_source_pb2.V3,
        initial_fetch_timeout=duration(0),
    )


def ads_sds_source() -> config_source_pb2.ConfigSource:
    """SDS from the control plane over the ADS stream."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def agent_secret(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=agent_sds_source())


def credential_secret(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_sds_source())


# ---- matchers and sockets --------------------------------------------------------------------


def san_matchers(sans: Iterable[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Exact SAN matchers: URI for ``spiffe://`` names, DNS otherwise."""
    M = common_pb2.SubjectAltNameMatcher
    out = []
    for san in sans:
        kind = M.URI if "://" in san else M.DNS
        out.append(M(san_type=kind, matcher=string_pb2.StringMatcher(exact=san)))
    return out


def tls_socket(
    context: tls_pb2.UpstreamTlsContext | tls_pb2.DownstreamTlsContext,
) -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pack(context))


def raw_socket() -> base_pb2.TransportSocket:
    return base_pb2.TransportSocket(name=RAW_SOCKET, typed_config=pack(raw_buffer_pb2.RawBuffer()))


def tls_params(minimum: int, maximum: int) -> common_pb2.TlsParameters:
    return common_pb2.TlsParameters(
        tls_minimum_protocol_version=minimum,
        tls_maximum_protocol_version=maximum,
    )


def _mesh_validation(
    sans: Sequence[str],
) -> tls_pb2.CommonTlsContext.CombinedCertificateValidationContext:
    return tls_pb2.CommonTlsContext.CombinedCertificateValidationContext(
        default_validation_context=common_pb2.CertificateValidationContext(
            match_typed_subject_alt_names=san_matchers(sans)
        ),
        validation_context_sds_secret_config=agent_secret(ROOT_SECRET),
    )


def istio_mutual_context(sni: str, sans: Sequence[str]) -> tls_pb2.UpstreamTlsContext:
    """Client side of mesh mTLS: the workload certificate, the mesh roots, SAN check, TLS 1.3."""
    common = tls_pb2.CommonTlsContext(
        tls_params=tls_params(TLS.TLSv1_3, TLS.TLSv1_3),
        tls_certificate_sds_secret_configs=[agent_secret(WORKLOAD_SECRET)],
        combined_validation_context=_mesh_validation(sans),
        alpn_protocols=list(MESH_CLIENT_ALPN),
    )
    return tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=sni)


def mesh_server_context() -> tls_pb2.DownstreamTlsContext:
    """Server side of mesh mTLS: a client certificate from the mesh roots is required."""
    common = tls_pb2.CommonTlsContext(
        tls_params=tls_params(TLS.TLSv1_2, TLS.TLSv1_3),
        tls_certificate_sds_secret_configs=[agent_secret(WORKLOAD_SECRET)],
        combined_validation_context=_mesh_validation(()),
    )
    ctx = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    ctx.require_client_certificate.value = True
    return ctx


def istio_sni(port: int, subset: str, hostname: str) -> str:
    """Istio's SNI for mesh mTLS: ``outbound_.9080_.v1_.reviews.default.svc.cluster.local``."""
    return f"outbound_.{port}_.{subset}_.{hostname}"


def socket_matches_auto(
    mesh: base_pb2.TransportSocket,
) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """``transport_socket_matches`` for auto mTLS: mTLS to ``tlsMode: istio`` endpoints,
    plaintext to the rest (the cluster's own ``transport_socket``, unset)."""
    match = struct_pb2.Struct()
    match.update({"tlsMode": TLS_MODE_ISTIO})
    return [
        cluster_pb2.Cluster.TransportSocketMatch(
            name="tlsMode-istio", match=match, transport_socket=mesh
        ),
        cluster_pb2.Cluster.TransportSocketMatch(
            name="tlsMode-disabled", match=struct_pb2.Struct(), transport_socket=raw_socket()
        ),
    ]


def endpoint_socket_metadata(labels: Mapping[str, str]) -> base_pb2.Metadata | None:
    """Endpoint metadata that selects the mTLS socket for meshed endpoints (else None)."""
    if not has_workload_identity(labels):
        return None
    meta = base_pb2.Metadata()
    meta.filter_metadata[SOCKET_MATCH_KEY].update({"tlsMode": TLS_MODE_ISTIO})
    return meta


# ---- DestinationRule tls ---------------------------------------------------------------------


@dataclass(frozen=True)
class UpstreamTls:
    """What a cluster's TLS setting turned into: the socket, and ADS secrets it names."""

    #: ``None``: plaintext (or auto, see ``auto``).
    socket: base_pb2.TransportSocket | None = None
    #: No DestinationRule ``tls``: use auto mTLS.
    auto: bool = False
    credentials: tuple[str, ...] = field(default=())


def _version(text: Any, default: int) -> int:
    return _VERSIONS.get(str(text or "").upper(), default)


def client_tls(
    tls: ClientTLSSettings | None,
    *,
    sni: str,
    mesh_sni: str,
    mesh_sans: Sequence[str],
    client_identity: bool,
    system_roots: str = DEFAULT_SYSTEM_ROOTS,
) -> UpstreamTls:
    """A DestinationRule ``trafficPolicy.tls`` (ClientTLSSettings) as an upstream socket.

    ``DISABLE`` is plaintext; ``SIMPLE`` verifies the server with ``caCertificates`` (a file
    on the proxy's host) or ``credentialName`` (``kubernetes://<name>-cacert`` over ADS),
    else with ``system_roots`` (the CA bundle of the proxy's host), as Istio does with
    ``VERIFY_CERTIFICATE_AT_CLIENT`` (its default since 1.20);
    ``MUTUAL`` adds the client certificate (``clientCertificate``/``privateKey`` files, or
    ``kubernetes://<name>``); ``ISTIO_MUTUAL`` is mesh mTLS to every endpoint. ``sni``,
    ``subjectAltNames`` and ``insecureSkipVerify`` as Istio. No mode: auto mTLS.
    """
    mode = (tls.mode if tls is not None else None) or ""
    if tls is None or not mode:
        return UpstreamTls(auto=True)
    if mode == "DISABLE":
        return UpstreamTls()
    sans = list(tls.subjectAltNames)
    if mode == "ISTIO_MUTUAL":
        if not client_identity:
            # No workload certificate to present: the proxy cannot do mesh mTLS.
            return UpstreamTls()
        ctx = istio_mutual_context(tls.sni or mesh_sni, sans or mesh_sans)
        return UpstreamTls(socket=tls_socket(ctx))
    common = tls_pb2.CommonTlsContext()
    credentials: list[str] = []
    name = tls.credentialName or ""
    skip_verify = bool(tls.insecureSkipVerify)
    if name:
        cert_name, ca_name = credential_resource_names(name)
        if mode == "MUTUAL":
            common.tls_certificate_sds_secret_configs.append(credential_secret(cert_name))
            credentials.append(cert_name)
        if not skip_verify:
            common.combined_validation_context.default_validation_context.match_typed_subject_alt_names.extend(
                san_matchers(sans)
            )
            common.combined_validation_context.validation_context_sds_secret_config.CopyFrom(
                credential_secret(ca_name)
            )
            credentials.append(ca_name)
    else:
        if mode == "MUTUAL" and tls.clientCertificate and tls.privateKey:
            common.tls_certificates.append(
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(filename=tls.clientCertificate),
                    private_key=base_pb2.DataSource(filename=tls.privateKey),
                )
            )
        if not skip_verify:
            vc = common.validation_context
            vc.trusted_ca.filename = tls.caCertificates or system_roots
            vc.match_typed_subject_alt_names.extend(san_matchers(sans))
    # ClientTLSSettings has no protocol versions: TLS 1.2 to 1.3.
    common.tls_params.CopyFrom(tls_params(TLS.TLSv1_2, TLS.TLSv1_3))
    ctx = tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=tls.sni or sni)
    return UpstreamTls(socket=tls_socket(ctx), credentials=tuple(credentials))


# ---- gateway (server) tls --------------------------------------------------------------------


def server_tls_context(
    tls: ServerTLSSettings,
) -> tuple[tls_pb2.DownstreamTlsContext, tuple[str, ...]]:
    """A Gateway server's ``tls`` (SIMPLE, MUTUAL, OPTIONAL_MUTUAL or ISTIO_MUTUAL) as a
    downstream context, with the ADS secrets it names.

    ``credentialName`` (or up to two ``credentialNames``, an RSA and an ECDSA certificate) is
    served over ADS; ``serverCertificate``/``privateKey``/``caCertificates`` (or
    ``tlsCertificates``) are files on the gateway's host. ISTIO_MUTUAL serves the gateway's
    own workload certificate and requires a client certificate from the mesh roots. For every
    mode: ``subjectAltNames``, ``verifyCertificateSpki``/``verifyCertificateHash`` (client
    certificates), ``caCrl`` (a file), ``minProtocolVersion``/``maxProtocolVersion`` and
    ``cipherSuites`` (TLS 1.2 and below; TLS 1.3's are not configurable in Envoy)."""
    mode = tls.mode or "SIMPLE"
    common = tls_pb2.CommonTlsContext(alpn_protocols=["h2", "http/1.1"])
    credentials: list[str] = []
    names = [tls.credentialName] if tls.credentialName else list(tls.credentialNames)
    mutual = mode in ("MUTUAL", "OPTIONAL_MUTUAL")
    vc: common_pb2.CertificateValidationContext | None = None
    if mode == "ISTIO_MUTUAL":
        mesh = mesh_server_context().common_tls_context
        common.tls_certificate_sds_secret_configs.extend(mesh.tls_certificate_sds_secret_configs)
        common.combined_validation_context.CopyFrom(mesh.combined_validation_context)
        vc = common.combined_validation_context.default_validation_context
    elif names:
        for name in names:
            cert_name, _ = credential_resource_names(name)
            common.tls_certificate_sds_secret_configs.append(credential_secret(cert_name))
            credentials.append(cert_name)
        if mutual:
            _, ca_name = credential_resource_names(names[0])
            cvc = common.combined_validation_context
            cvc.validation_context_sds_secret_config.CopyFrom(credential_secret(ca_name))
            vc = cvc.default_validation_context
            credentials.append(ca_name)
    else:
        files = [(tls.serverCertificate, tls.privateKey, tls.caCertificates)]
        if tls.tlsCertificates:
            files = [
                (c.serverCertificate, c.privateKey, c.caCertificates) for c in tls.tlsCertificates
            ]
        for cert, key, _ in files:
            common.tls_certificates.append(
                common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(filename=str(cert)),
                    private_key=base_pb2.DataSource(filename=str(key)),
                )
            )
        ca = next((c for _, _, c in files if c), None)
        if mutual and ca:
            vc = common.validation_context
            vc.trusted_ca.filename = ca
            if tls.caCrl:
                vc.crl.filename = tls.caCrl
    if vc is not None:
        vc.match_typed_subject_alt_names.extend(san_matchers(tls.subjectAltNames))
        vc.verify_certificate_spki.extend(tls.verifyCertificateSpki)
        vc.verify_certificate_hash.extend(tls.verifyCertificateHash)
    common.tls_params.CopyFrom(
        tls_params(
            _version(tls.minProtocolVersion, TLS.TLSv1_2),
            _version(tls.maxProtocolVersion, TLS.TLSv1_3),
        )
    )
    common.tls_params.cipher_suites.extend(tls.cipherSuites)
    ctx = tls_pb2.DownstreamTlsContext(common_tls_context=common)
    if mode in ("MUTUAL", "ISTIO_MUTUAL"):
        ctx.require_client_certificate.value = True
    return ctx, tuple(credentials)


__all__ = [
    "MESH_CLIENT_ALPN",
    "MESH_SERVER_ALPN",
    "ROOT_SECRET",
    "SDS_CLUSTER",
    "TLS_MODE_ISTIO",
    "TLS_MODE_LABEL",
    "WORKLOAD_SECRET",
    "UpstreamTls",
    "ads_sds_source",
    "agent_sds_source",
    "client_tls",
    "endpoint_socket_metadata",
    "has_workload_identity",
    "istio_mutual_context",
    "istio_sni",
    "mesh_server_context",
    "raw_socket",
    "san_matchers",
    "server_tls_context",
    "socket_matches_auto",
    "spiffe_uri",
    "tls_socket",
]
