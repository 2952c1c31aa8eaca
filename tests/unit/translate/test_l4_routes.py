"""TCP and TLS routing on gateways and sidecars: the listeners and clusters translation gives."""

from __future__ import annotations

from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from pilotfish.api.virtualservice import HTTPRetry
from pilotfish.translate import CLUSTER_TYPE, LISTENER_TYPE, generate
from pilotfish.translate.routes import retry_policy
from tests.unit.translate.fixtures import (
    FEATURES,
    bookinfo_push,
    from_yaml,
    listener,
    router_node,
    sidecar_node,
    unpack_tcp,
)

M = "mongo.default.svc.cluster.local"


def gateway(servers: str) -> list[dict[str, Any]]:
    return from_yaml(
        f"""
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
{servers}
"""
    )


SHIFT = """
kind: VirtualService
metadata: {name: mongo-gw, namespace: default}
spec:
  hosts: ["*"]
  gateways: [gw]
  tcp:
  - match: [{port: 31400}]
    route:
    - {destination: {host: mongo, port: {number: 27017}}, weight: 80}
    - {destination: {host: mongo-canary}, weight: 20}
"""


def test_gateway_tcp_server_forwards_by_the_bound_tcp_rule() -> None:
    docs = gateway("  - {port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}")
    push = bookinfo_push(FEATURES + docs + from_yaml(SHIFT))
    lst = listener(generate(router_node(), push), "0.0.0.0_31400")
    (chain,) = lst.filter_chains
    tp = unpack_tcp(chain)
    # mongo-canary has one port: a destination without a port takes it.
    assert [(c.name, c.weight) for c in tp.weighted_clusters.clusters] == [
        (f"outbound|27017||{M}", 80),
        ("outbound|27017||mongo-canary.default.svc.cluster.local", 20),
    ]


def test_gateway_tcp_server_without_a_rule_has_no_listener() -> None:
    docs = gateway("  - {port: {number: 31400, name: tcp, protocol: TCP}, hosts: ['*']}")
    other = SHIFT.replace("port: 31400", "port: 31401")
    res = generate(router_node(), bookinfo_push(FEATURES + docs + from_yaml(other)))
    assert "0.0.0.0_31400" not in res[LISTENER_TYPE]


def test_terminating_tls_server_forwards_by_tcp_rules_and_istio_mutual_uses_mesh_certs() -> None:
    docs = gateway(
        "  - {port: {number: 31400, name: tls, protocol: TLS}, hosts: ['*'],"
        " tls: {mode: ISTIO_MUTUAL}}"
    )
    push = bookinfo_push(FEATURES + docs + from_yaml(SHIFT))
    identity = {"istio": "ingressgateway", "security.istio.io/tlsMode": "istio"}
    node = router_node(labels=identity, service_account="gw")
    lst = listener(generate(node, push), "0.0.0.0_31400")
    (chain,) = lst.filter_chains
    assert chain.filter_chain_match.transport_protocol == "tls"
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    assert ctx.require_client_certificate.value
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == [
        "default"
    ]
    assert len(unpack_tcp(chain).weighted_clusters.clusters) == 2


def test_auto_passthrough_forwards_by_sni_to_plain_copies_of_the_clusters() -> None:
    docs = gateway(
        "  - {port: {number: 15443, name: tls, protocol: TLS}, hosts: ['*.local'],"
        " tls: {mode: AUTO_PASSTHROUGH}}"
    )
    res = generate(router_node(), bookinfo_push(FEATURES + docs))
    (chain,) = listener(res, "0.0.0.0_15443").filter_chains
    assert list(chain.filter_chain_match.server_names) == ["*.local"]
    assert [f.name for f in chain.filters] == [
        "envoy.filters.network.sni_cluster",
        "envoy.filters.network.tcp_proxy",
    ]
    clusters = res[CLUSTER_TYPE]
    sni = clusters[f"outbound_.27017_._.{M}"]
    original = clusters[f"outbound|27017||{M}"]
    assert sni.eds_cluster_config.service_name == original.eds_cluster_config.service_name
    assert not sni.HasField("transport_socket") and not sni.transport_socket_matches


def test_sidecar_tcp_match_by_destination_subnet_and_source_namespace() -> None:
    rule = """
kind: VirtualService
metadata: {name: mongo, namespace: default}
spec:
  hosts: [mongo]
  tcp:
  - match: [{destinationSubnets: [192.0.2.0/24]}]
    route: [{destination: {host: mongo-canary}}]
  - match: [{sourceNamespace: other}]
    route: [{destination: {host: mongo-canary}}]
  - route: [{destination: {host: mongo, port: {number: 27017}}}]
"""
    push = bookinfo_push(FEATURES + from_yaml(rule))
    vip = push.service(M).vip  # type: ignore[union-attr]

    def target(node: Any) -> str:
        lst = listener(generate(node, push), "virtualOutbound")
        chain = next(c for c in lst.filter_chains if c.name == f"{vip}_27017")
        return str(unpack_tcp(chain).cluster)

    # The VIP is not in 192.0.2.0/24 and the caller is in default: the last rule.
    assert target(sidecar_node()) == f"outbound|27017||{M}"
    subnet = rule.replace("192.0.2.0/24", f"{vip}/32")
    push = bookinfo_push(FEATURES + from_yaml(subnet))
    assert target(sidecar_node()).startswith("outbound|27017||mongo-canary")
    # sourceSubnet: the calling proxy's address (10.1.0.10 by default) lies in it.
    source = rule.replace("destinationSubnets: [192.0.2.0/24]", "sourceSubnet: 10.1.0.0/24")
    push = bookinfo_push(FEATURES + from_yaml(source))
    assert target(sidecar_node()).startswith("outbound|27017||mongo-canary")
    assert target(sidecar_node(ip="10.2.0.10")) == f"outbound|27017||{M}"


def test_use_client_protocol_and_retry_backoff() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {useClientProtocol: true}
"""
    push = bookinfo_push(from_yaml(rule))
    cluster = generate(sidecar_node(), push)[CLUSTER_TYPE][
        "outbound|9080||reviews.default.svc.cluster.local"
    ]
    opts = hpo.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(opts)
    assert opts.HasField("use_downstream_protocol_config")
    policy = retry_policy(
        HTTPRetry.model_validate(
            {"attempts": 2, "backoff": "0.1s", "retryIgnorePreviousHosts": False}
        )
    )
    assert policy is not None
    assert policy.retry_back_off.base_interval.ToMilliseconds() == 100
    assert not policy.retry_host_predicate


def test_sidecar_tls_rules_route_tls_ports_by_sni() -> None:
    docs = from_yaml(
        """
kind: Service
metadata: {name: secure, namespace: default}
spec:
  selector: {app: secure}
  ports: [{name: tls, port: 8443}, {name: tcp, port: 9000}]
---
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure, "*.example.com"]
  tls:
  - match: [{sniHosts: [one.example.com]}]
    route: [{destination: {host: secure, subset: v1, port: {number: 8443}}}]
  - match: [{sniHosts: [one.example.com, two.example.com], sourceLabels: {app: nobody}}]
    route: [{destination: {host: secure, subset: v2, port: {number: 8443}}}]
"""
    )
    push = bookinfo_push(FEATURES + docs)
    vip = push.service("secure.default.svc.cluster.local").vip  # type: ignore[union-attr]
    lst = listener(generate(sidecar_node(), push), "virtualOutbound")
    by_name = {c.name: c for c in lst.filter_chains}
    sni = by_name[f"{vip}_8443_sni0"]
    assert list(sni.filter_chain_match.server_names) == ["one.example.com"]
    assert unpack_tcp(sni).cluster == "outbound|8443|v1|secure.default.svc.cluster.local"
    assert f"{vip}_8443_sni1" not in by_name  # sourceLabels do not match this caller
    assert f"{vip}_8443" in by_name and f"{vip}_9000_sni0" not in by_name
    # The TLS inspector runs for 8443, and 443 (the features' wildcard entry, matched by
    # SNI), only.
    (inspector,) = [f for f in lst.listener_filters if "tls_inspector" in f.name]
    rules = inspector.filter_disabled.not_match.or_match.rules
    assert [r.destination_port_range.start for r in rules] == [443, 8443]


def test_server_tls_fields_reach_the_downstream_context() -> None:
    from pilotfish.api.networking import ServerTLSSettings
    from pilotfish.translate.tls import server_tls_context

    ctx, names = server_tls_context(
        ServerTLSSettings.model_validate(
            {
                "mode": "MUTUAL",
                "credentialNames": ["rsa-cert", "ecdsa-cert"],
                "subjectAltNames": ["spiffe://cluster.local/ns/default/sa/client"],
                "verifyCertificateHash": ["AB:CD"],
                "minProtocolVersion": "TLSV1_2",
                "maxProtocolVersion": "TLSV1_2",
                "cipherSuites": ["ECDHE-ECDSA-AES128-GCM-SHA256"],
            }
        )
    )
    common = ctx.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == [
        "kubernetes://rsa-cert",
        "kubernetes://ecdsa-cert",
    ]
    assert names == (
        "kubernetes://rsa-cert",
        "kubernetes://ecdsa-cert",
        "kubernetes://rsa-cert-cacert",
    )
    vc = common.combined_validation_context.default_validation_context
    assert list(vc.verify_certificate_hash) == ["AB:CD"]
    assert len(vc.match_typed_subject_alt_names) == 1
    assert list(common.tls_params.cipher_suites) == ["ECDHE-ECDSA-AES128-GCM-SHA256"]
    assert ctx.require_client_certificate.value

    mesh, names = server_tls_context(
        ServerTLSSettings.model_validate(
            {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["spiffe://cluster.local/ns/a/sa/b"]}
        )
    )
    assert names == ()
    assert [s.name for s in mesh.common_tls_context.tls_certificate_sds_secret_configs] == [
        "default"
    ]
    mvc = mesh.common_tls_context.combined_validation_context
    assert mvc.validation_context_sds_secret_config.name == "ROOTCA"
    assert len(mvc.default_validation_context.match_typed_subject_alt_names) == 1
    assert mesh.require_client_certificate.value


def test_grpc_web_gateway_server_is_served_as_http() -> None:
    docs = gateway("  - {port: {number: 8080, name: grpc-web, protocol: GRPC-WEB}, hosts: ['*']}")
    res = generate(router_node(), bookinfo_push(FEATURES + docs))
    (chain,) = listener(res, "0.0.0.0_8080").filter_chains
    assert chain.filters[0].name == "envoy.filters.network.http_connection_manager"


def test_max_concurrent_streams_limits_http2_upstreams() -> None:
    rule = """
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 7}
"""
    cluster = generate(sidecar_node(), bookinfo_push(from_yaml(rule)))[CLUSTER_TYPE][
        "outbound|9080||reviews.default.svc.cluster.local"
    ]
    opts = hpo.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ].Unpack(opts)
    h2 = opts.explicit_http_config.http2_protocol_options
    assert h2.max_concurrent_streams.value == 7


WILDCARD = """
kind: ServiceEntry
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.wikipedia.org"]
  ports: [{number: 443, name: tls, protocol: TLS}, {number: 7000, name: tcp, protocol: TCP}]
  resolution: NONE
---
kind: ServiceEntry
metadata: {name: wiki-www, namespace: default}
spec:
  hosts: [www.wikipedia.org]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""


def test_sidecar_matches_tls_to_a_wildcard_entry_by_sni_and_its_tcp_ports_by_port() -> None:
    push = bookinfo_push(from_yaml(WILDCARD))
    lst = listener(generate(sidecar_node(), push), "virtualOutbound")
    by_name = {c.name: c for c in lst.filter_chains}
    sni = by_name["0.0.0.0_443_*.wikipedia.org_sni0"]
    assert list(sni.filter_chain_match.server_names) == ["*.wikipedia.org"]
    assert not sni.filter_chain_match.prefix_ranges
    assert unpack_tcp(sni).cluster == "outbound|443||*.wikipedia.org"
    # The non-wildcard host keeps its VIP chain (it is more specific: Envoy compares the
    # destination address before the SNI).
    vip = push.service("www.wikipedia.org").vip  # type: ignore[union-attr]
    assert by_name[f"{vip}_443"].filter_chain_match.prefix_ranges[0].address_prefix == vip
    tcp = by_name["0.0.0.0_7000"]
    assert tcp.filter_chain_match.destination_port.value == 7000
    assert not tcp.filter_chain_match.prefix_ranges and not tcp.filter_chain_match.server_names
    assert unpack_tcp(tcp).cluster == "outbound|7000||*.wikipedia.org"
    (inspector,) = [f for f in lst.listener_filters if "tls_inspector" in f.name]
    assert inspector.filter_disabled.not_match.destination_port_range.start == 443


def test_tls_rules_of_a_wildcard_entry_route_by_their_sni_hosts_first() -> None:
    rule = """
---
kind: VirtualService
metadata: {name: wiki, namespace: default}
spec:
  hosts: ["*.wikipedia.org"]
  tls:
  - match: [{port: 443, sniHosts: [en.wikipedia.org]}]
    route: [{destination: {host: www.wikipedia.org, port: {number: 443}}}]
"""
    push = bookinfo_push(from_yaml(WILDCARD + rule))
    lst = listener(generate(sidecar_node(), push), "virtualOutbound")
    by_name = {c.name: c for c in lst.filter_chains}
    routed = by_name["0.0.0.0_443_*.wikipedia.org_sni0"]
    assert list(routed.filter_chain_match.server_names) == ["en.wikipedia.org"]
    assert unpack_tcp(routed).cluster == "outbound|443||www.wikipedia.org"
    rest = by_name["0.0.0.0_443_*.wikipedia.org_sni1"]
    assert list(rest.filter_chain_match.server_names) == ["*.wikipedia.org"]
    assert unpack_tcp(rest).cluster == "outbound|443||*.wikipedia.org"
