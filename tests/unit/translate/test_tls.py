"""TLS translation: auto mTLS, DestinationRule tls modes, XFCC, gateway credentials over SDS."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from pilotfish.server import proxy_resources
from pilotfish.translate import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, generate
from pilotfish.translate.generator import SECRET_TYPE
from pilotfish.translate.tls import TLS_MODE_LABEL
from tests.unit.translate.fixtures import (
    from_yaml,
    pod,
    push_for,
    router_node,
    service,
    sidecar_node,
    unpack_hcm,
)
from tests.unit.xds.pem import CA, OTHER, SERVER, secret

REVIEWS = "outbound|9080||reviews.default.svc.cluster.local"
MESH = {TLS_MODE_LABEL: "istio"}

DOCS = [
    service("reviews"),
    service("productpage"),
    pod("reviews-v1", "10.1.0.12", {"app": "reviews", "version": "v1", **MESH}),
    pod("reviews-v2", "10.1.0.13", {"app": "reviews", "version": "v2"}),  # no sidecar cert
    pod("productpage-v1", "10.1.0.10", {"app": "productpage", **MESH}),
]


def client(**kw: Any) -> Any:
    return sidecar_node(labels={"app": "productpage", "version": "v1", **MESH}, **kw)


def upstream(ts: Any) -> tls_pb2.UpstreamTlsContext:
    ctx = tls_pb2.UpstreamTlsContext()
    assert ts.typed_config.Unpack(ctx)
    return ctx


def dr(tls: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {"host": "reviews", "trafficPolicy": {"tls": tls}},
    }


def test_auto_mtls_matches_meshed_endpoints_only() -> None:
    res = generate(client(), push_for(DOCS))
    cluster = res[CLUSTER_TYPE][REVIEWS]
    assert not cluster.HasField("transport_socket")
    istio, plain = cluster.transport_socket_matches
    assert dict(istio.match) == {"tlsMode": "istio"} and plain.name == "tlsMode-disabled"
    ctx = upstream(istio.transport_socket)
    assert ctx.sni == "outbound_.9080_._.reviews.default.svc.cluster.local"
    common = ctx.common_tls_context
    params = common.tls_params
    assert params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert params.tls_maximum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    sds = common.tls_certificate_sds_secret_configs[0].sds_config.api_config_source
    assert sds.grpc_services[0].envoy_grpc.cluster_name == "sds-grpc"
    cvc = common.combined_validation_context
    assert cvc.validation_context_sds_secret_config.name == "ROOTCA"
    sans = [m.matcher.exact for m in cvc.default_validation_context.match_typed_subject_alt_names]
    assert sans == ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]
    # The endpoint with a sidecar certificate carries the match metadata; the other does not.
    cla = res[ENDPOINT_TYPE][REVIEWS]
    meta = {
        e.endpoint.address.socket_address.address: dict(
            e.metadata.filter_metadata["envoy.transport_socket_match"]
        )
        for e in cla.endpoints[0].lb_endpoints
    }
    assert meta == {"10.1.0.12": {"tlsMode": "istio"}, "10.1.0.13": {}}


def test_client_without_identity_never_names_the_sds_cluster() -> None:
    res = generate(sidecar_node(), push_for([*DOCS, dr({"mode": "ISTIO_MUTUAL"})]))
    for cluster in res[CLUSTER_TYPE].values():
        assert not cluster.transport_socket_matches
        assert b"sds-grpc" not in cluster.SerializeToString()


def test_destination_rule_modes() -> None:
    disabled = generate(client(), push_for([*DOCS, dr({"mode": "DISABLE"})]))[CLUSTER_TYPE]
    assert not disabled[REVIEWS].HasField("transport_socket")
    assert not disabled[REVIEWS].transport_socket_matches

    istio = generate(client(), push_for([*DOCS, dr({"mode": "ISTIO_MUTUAL"})]))[CLUSTER_TYPE]
    assert not istio[REVIEWS].transport_socket_matches
    assert upstream(istio[REVIEWS].transport_socket).common_tls_context.alpn_protocols == [
        "istio-peer-exchange",
        "istio",
    ]

    simple = dr(
        {
            "mode": "SIMPLE",
            "caCertificates": "/etc/ca.pem",
            "sni": "r.example",
            "subjectAltNames": ["r.example"],
        }
    )
    ctx = upstream(
        generate(client(), push_for([*DOCS, simple]))[CLUSTER_TYPE][REVIEWS].transport_socket
    )
    assert ctx.sni == "r.example"
    vc = ctx.common_tls_context.validation_context
    assert vc.trusted_ca.filename == "/etc/ca.pem"
    assert vc.match_typed_subject_alt_names[0].matcher.exact == "r.example"
    assert not ctx.common_tls_context.tls_certificates


def test_simple_without_a_ca_verifies_with_the_proxys_system_roots() -> None:
    def validation(tls: dict[str, Any], **node: Any) -> common_pb2.CertificateValidationContext:
        cluster = generate(client(**node), push_for([*DOCS, dr(tls)]))[CLUSTER_TYPE][REVIEWS]
        common = upstream(cluster.transport_socket).common_tls_context
        assert not common.HasField("combined_validation_context")
        return common.validation_context

    # As Istio (VERIFY_CERTIFICATE_AT_CLIENT): the system roots, Debian's unless the proxy
    # names its host's bundle.
    assert validation({"mode": "SIMPLE"}).trusted_ca.filename == (
        "/etc/ssl/certs/ca-certificates.crt"
    )
    own = validation({"mode": "SIMPLE"}, extra={"SYSTEM_ROOTS": "/etc/pki/tls/cert.pem"})
    assert own.trusted_ca.filename == "/etc/pki/tls/cert.pem"
    sans = validation({"mode": "SIMPLE", "subjectAltNames": ["r.example"]})
    assert sans.trusted_ca.filename == "/etc/ssl/certs/ca-certificates.crt"
    assert sans.match_typed_subject_alt_names[0].matcher.exact == "r.example"
    # insecureSkipVerify: no validation at all.
    assert validation({"mode": "SIMPLE", "insecureSkipVerify": True}).ByteSize() == 0


def test_mutual_with_credential_name_serves_the_secret_over_ads() -> None:
    docs = [
        *DOCS,
        dr({"mode": "MUTUAL", "credentialName": "client-cred"}),
        secret("client-cred", "default", tls_crt=SERVER.cert, tls_key=SERVER.key, ca_crt=CA.cert),
    ]
    push = push_for(docs)
    config = generate(client(), push)
    # Translation names the secrets and never carries their content.
    assert not config[SECRET_TYPE]
    res = proxy_resources(client(), push)
    ctx = upstream(res[CLUSTER_TYPE][REVIEWS].transport_socket)
    common = ctx.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == [
        "kubernetes://client-cred"
    ]
    assert common.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    cvc = common.combined_validation_context
    assert cvc.validation_context_sds_secret_config.name == "kubernetes://client-cred-cacert"
    secrets = res[SECRET_TYPE]
    key = secrets["kubernetes://client-cred"].tls_certificate.private_key.inline_bytes
    assert key == SERVER.key.encode()
    cacert = secrets["kubernetes://client-cred-cacert"]
    assert cacert.validation_context.trusted_ca.inline_bytes == CA.cert.encode()


def test_inbound_mtls_chain_sets_xfcc_and_plaintext_sanitizes() -> None:
    node = sidecar_node(
        app="reviews", ip="10.1.0.12", labels={"app": "reviews", **MESH},
        interception_mode="NONE", outbound_port=15001, inbound_ports={9080: 19080},
    )  # fmt: skip
    lst = generate(node, push_for(DOCS))[LISTENER_TYPE]["10.1.0.12_19080"]
    mtls, plain = lst.filter_chains
    H = hcm_pb2.HttpConnectionManager
    hcm = unpack_hcm(mtls)
    assert hcm.forward_client_cert_details == H.APPEND_FORWARD
    details = hcm.set_current_client_cert_details
    assert details.uri and details.dns and details.subject.value
    assert unpack_hcm(plain).forward_client_cert_details == H.SANITIZE
    ctx = tls_pb2.DownstreamTlsContext()
    assert mtls.transport_socket.typed_config.Unpack(ctx)
    assert ctx.require_client_certificate.value
    assert (
        ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config.name
        == "ROOTCA"
    )


GATEWAY = from_yaml(
    """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: bookinfo}
    hosts: [bookinfo.example.com]
  - port: {number: 443, name: https-mutual, protocol: HTTPS}
    tls: {mode: MUTUAL, credentialName: mutual}
    hosts: [mutual.example.com]
  - port: {number: 443, name: https-missing, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: missing}
    hosts: [missing.example.com]
  - port: {number: 8443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH}
    hosts: ["*.passthrough.test"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs, namespace: default}
spec:
  hosts: [bookinfo.example.com, mutual.example.com, missing.example.com]
  gateways: [gw]
  http:
  - route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pass, namespace: default}
spec:
  hosts: ["*.passthrough.test"]
  gateways: [gw]
  tls:
  - match: [{port: 8443, sniHosts: [a.passthrough.test]}]
    route: [{destination: {host: reviews, port: {number: 9080}}}]
"""
)


def _gateway_resources() -> Any:
    docs = [
        *DOCS,
        *GATEWAY,
        secret("bookinfo", tls_crt=SERVER.cert, tls_key=SERVER.key),
        secret("mutual", tls_crt=OTHER.cert, tls_key=OTHER.key),
        secret("mutual-cacert", cacert=CA.cert),
    ]
    return proxy_resources(router_node(gateway_ports={443: 8443, 8443: 9443}), push_for(docs))


def test_gateway_https_chains_by_sni_with_secrets() -> None:
    res = _gateway_resources()
    lst = res[LISTENER_TYPE]["0.0.0.0_8443"]
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    by_sni = {tuple(c.filter_chain_match.server_names): c for c in lst.filter_chains}
    # The server whose Secret is missing is left out; the others are selected by SNI.
    assert set(by_sni) == {("bookinfo.example.com",), ("mutual.example.com",)}
    hcm = unpack_hcm(by_sni[("bookinfo.example.com",)])
    assert hcm.rds.route_config_name == "https.443.https.gw.default"
    assert "https.443.https.gw.default" in res[ROUTE_TYPE]
    ctx = tls_pb2.DownstreamTlsContext()
    by_sni[("mutual.example.com",)].transport_socket.typed_config.Unpack(ctx)
    assert ctx.require_client_certificate.value
    assert set(res[SECRET_TYPE]) == {
        "kubernetes://bookinfo",
        "kubernetes://mutual",
        "kubernetes://mutual-cacert",
    }
    assert (
        res[SECRET_TYPE]["kubernetes://mutual-cacert"].validation_context.trusted_ca.inline_bytes
        == CA.cert.encode()
    )


def test_gateway_server_whose_secret_is_broken_or_unreadable_is_left_out() -> None:
    docs = [
        *DOCS,
        *GATEWAY,
        secret("bookinfo", tls_crt="CERT", tls_key="KEY"),  # not PEM
        secret("mutual", "elsewhere", tls_crt=OTHER.cert, tls_key=OTHER.key),  # not readable
        secret("mutual-cacert", cacert=CA.cert),
        secret("missing", tls_crt=SERVER.cert, tls_key=SERVER.key),
    ]
    res = proxy_resources(router_node(gateway_ports={443: 8443, 8443: 9443}), push_for(docs))
    lst = res[LISTENER_TYPE]["0.0.0.0_8443"]
    assert [tuple(c.filter_chain_match.server_names) for c in lst.filter_chains] == [
        ("missing.example.com",)
    ]
    assert set(res[SECRET_TYPE]) == {"kubernetes://missing"}


def test_gateway_passthrough_routes_by_sni() -> None:
    lst = _gateway_resources()[LISTENER_TYPE]["0.0.0.0_9443"]
    (chain,) = lst.filter_chains
    assert list(chain.filter_chain_match.server_names) == ["a.passthrough.test"]
    assert not chain.HasField("transport_socket")
    assert chain.filters[0].name == "envoy.filters.network.tcp_proxy"
    assert REVIEWS.encode() in chain.filters[0].typed_config.value


def test_cluster_type_is_unchanged_by_tls() -> None:
    res = generate(client(), push_for(DOCS))
    assert res[CLUSTER_TYPE][REVIEWS].type == cluster_pb2.Cluster.EDS


def test_auto_mtls_sends_plaintext_where_peer_authentication_disables_the_port() -> None:
    def tls_endpoints(port_mode: str) -> set[str]:
        pa = {
            "apiVersion": "security.istio.io/v1",
            "kind": "PeerAuthentication",
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": {"version": "v1"}},
                "mtls": {"mode": "STRICT"},
                "portLevelMtls": {"9080": {"mode": port_mode}},
            },
        }
        cla = generate(client(), push_for([*DOCS, pa]))[ENDPOINT_TYPE][REVIEWS]
        return {
            e.endpoint.address.socket_address.address
            for e in cla.endpoints[0].lb_endpoints
            if dict(e.metadata.filter_metadata["envoy.transport_socket_match"])
        }

    assert tls_endpoints("STRICT") == {"10.1.0.12"}
    assert tls_endpoints("DISABLE") == set()


def _internal_entry(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {
            "hosts": ["db.internal"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 5000, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "10.2.0.1", "labels": MESH}],
            **spec,
        },
    }


DB = "outbound|5000||db.internal"


def _mesh_sans(ctx: tls_pb2.UpstreamTlsContext) -> list[str]:
    cvc = ctx.common_tls_context.combined_validation_context
    return [m.matcher.exact for m in cvc.default_validation_context.match_typed_subject_alt_names]


def test_service_entry_subject_alt_names_are_verified_by_auto_mtls() -> None:
    # Istio: the entry's subjectAltNames are merged with the endpoints' service accounts; an
    # endpoint without a serviceAccount adds none.
    sans = ["spiffe://cluster.local/ns/db/sa/db-server", "db.internal"]
    res = generate(client(), push_for([_internal_entry(subjectAltNames=sans)]))
    istio, _ = res[CLUSTER_TYPE][DB].transport_socket_matches
    assert _mesh_sans(upstream(istio.transport_socket)) == sorted(sans)
    with_account = _internal_entry(
        subjectAltNames=sans[:1],
        endpoints=[{"address": "10.2.0.1", "labels": MESH, "serviceAccount": "legacy"}],
    )
    cluster = generate(client(), push_for([with_account]))[CLUSTER_TYPE][DB]
    istio, _ = cluster.transport_socket_matches
    assert _mesh_sans(upstream(istio.transport_socket)) == [
        "spiffe://cluster.local/ns/db/sa/db-server",
        "spiffe://cluster.local/ns/default/sa/legacy",
    ]
    # No account and no subjectAltNames: still mesh mTLS, verified against the mesh roots only.
    cluster = generate(client(), push_for([_internal_entry()]))[CLUSTER_TYPE][DB]
    istio, _ = cluster.transport_socket_matches
    assert _mesh_sans(upstream(istio.transport_socket)) == []


def test_destination_rule_subject_alt_names_take_precedence_over_the_entry() -> None:
    entry = _internal_entry(subjectAltNames=["spiffe://cluster.local/ns/db/sa/db-server"])
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"host": "db.internal", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
    }
    cluster = generate(client(), push_for([entry, rule]))[CLUSTER_TYPE][DB]
    assert _mesh_sans(upstream(cluster.transport_socket)) == [
        "spiffe://cluster.local/ns/db/sa/db-server"
    ]
    rule["spec"]["trafficPolicy"]["tls"]["subjectAltNames"] = ["spiffe://cluster.local/ns/x/sa/y"]
    cluster = generate(client(), push_for([entry, rule]))[CLUSTER_TYPE][DB]
    assert _mesh_sans(upstream(cluster.transport_socket)) == ["spiffe://cluster.local/ns/x/sa/y"]
