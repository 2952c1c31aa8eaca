"""Sidecar scoping: which Sidecar applies (Istio's order) and what a scoped proxy receives."""

from __future__ import annotations

from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from pilotfish.model.sidecar import select_sidecar, sidecar_scope
from pilotfish.translate import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, generate
from pilotfish.translate.clusters import HTTP_OPTIONS_KEY
from tests.unit.translate.fixtures import (
    listener,
    push_for,
    route_config,
    service,
    sidecar_node,
    unpack_hcm,
    unpack_tcp,
)


def sidecar(
    name: str = "default", ns: str = "default", created: str = "", **spec: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if created:
        meta["creationTimestamp"] = created
    return {"kind": "Sidecar", "metadata": meta, "spec": spec}


SERVICES = [
    service("productpage"),
    service("reviews"),
    service("httpbin", ns="other", ports=[{"name": "http", "port": 8000}]),
    service("db", ns="other", ports=[{"name": "tcp", "port": 5432}]),
    service("istiod", ns="istio-system", ports=[{"name": "http", "port": 15014}]),
]
LOCAL_ONLY = {"egress": [{"hosts": ["./*", "istio-system/*"]}]}


def hosts(push: Any, ns: str = "default", labels: dict[str, str] | None = None) -> list[str]:
    scope = sidecar_scope(push, ns, labels or {"app": "productpage"})
    return [s.hostname for s in scope.services]


def test_without_a_sidecar_every_exported_service_is_in_scope() -> None:
    push = push_for(SERVICES)
    assert len(hosts(push)) == 5
    assert select_sidecar(push, "default", {}) is None


def test_egress_hosts_limit_the_services() -> None:
    push = push_for([*SERVICES, sidecar(**LOCAL_ONLY)])
    assert hosts(push) == [
        "istiod.istio-system.svc.cluster.local",
        "productpage.default.svc.cluster.local",
        "reviews.default.svc.cluster.local",
    ]
    # The same Sidecar in another namespace: "." is that namespace.
    push = push_for([*SERVICES, sidecar(ns="other", **LOCAL_ONLY)])
    assert hosts(push, "other") == [
        "db.other.svc.cluster.local",
        "httpbin.other.svc.cluster.local",
        "istiod.istio-system.svc.cluster.local",
    ]


def test_namespace_and_host_forms() -> None:
    def only(*h: str) -> list[str]:
        return hosts(push_for([*SERVICES, sidecar(egress=[{"hosts": list(h)}])]))

    assert only("other/httpbin.other.svc.cluster.local") == ["httpbin.other.svc.cluster.local"]
    assert only("*/*.other.svc.cluster.local") == [
        "db.other.svc.cluster.local",
        "httpbin.other.svc.cluster.local",
    ]
    assert only("~/*") == []
    assert len(only("*/*")) == 5
    # The namespace part must be the service's namespace.
    assert only("default/httpbin.other.svc.cluster.local") == []


def test_exported_elsewhere_stays_invisible() -> None:
    private = service("secret", ns="other", **{"exportTo": ["."]})
    private["metadata"]["annotations"] = {"networking.istio.io/exportTo": "."}
    push = push_for([private, sidecar(egress=[{"hosts": ["*/*"]}])])
    assert hosts(push) == []


def test_workload_selector_beats_namespace_default_beats_root_default() -> None:
    docs = [
        *SERVICES,
        sidecar("mesh-default", ns="istio-system", egress=[{"hosts": ["istio-system/*"]}]),
        sidecar("ns-default", **LOCAL_ONLY),
        sidecar(
            "for-reviews",
            workloadSelector={"labels": {"app": "reviews"}},
            egress=[{"hosts": ["other/*"]}],
        ),
    ]
    push = push_for(docs)
    assert select_sidecar(push, "default", {"app": "reviews"}).name == "for-reviews"  # type: ignore[union-attr]
    assert select_sidecar(push, "default", {"app": "productpage"}).name == "ns-default"  # type: ignore[union-attr]
    root = select_sidecar(push, "other", {"app": "x"})
    assert root is not None and root.name == "mesh-default"
    assert hosts(push, "default", {"app": "reviews"}) == [
        "db.other.svc.cluster.local",
        "httpbin.other.svc.cluster.local",
    ]
    assert hosts(push, "other", {"app": "x"}) == ["istiod.istio-system.svc.cluster.local"]


def test_root_default_reads_dot_as_the_proxys_namespace() -> None:
    push = push_for([*SERVICES, sidecar("mesh", ns="istio-system", **LOCAL_ONLY)])
    assert "httpbin.other.svc.cluster.local" in hosts(push, "other")
    assert "reviews.default.svc.cluster.local" not in hosts(push, "other")


def test_the_oldest_matching_sidecar_wins() -> None:
    docs = [
        *SERVICES,
        sidecar("newer", created="2026-02-01T00:00:00Z", egress=[{"hosts": ["other/*"]}]),
        sidecar("older", created="2026-01-01T00:00:00Z", **LOCAL_ONLY),
    ]
    assert select_sidecar(push_for(docs), "default", {}).name == "older"  # type: ignore[union-attr]


def test_root_namespace_comes_from_the_mesh_config() -> None:
    operator = {
        "kind": "IstioOperator",
        "metadata": {"name": "mesh", "namespace": "istio-system"},
        "spec": {"meshConfig": {"rootNamespace": "mesh-root"}},
    }
    docs = [*SERVICES, sidecar("d", ns="mesh-root", **LOCAL_ONLY), operator]
    push = push_for(docs)
    assert select_sidecar(push, "default", {}) is not None
    assert "httpbin.other.svc.cluster.local" not in hosts(push)


def test_virtual_service_destinations_are_imported() -> None:
    vs = {
        "kind": "VirtualService",
        "metadata": {"name": "reviews", "namespace": "default"},
        "spec": {
            "hosts": ["reviews"],
            "http": [{"route": [{"destination": {"host": "httpbin.other.svc.cluster.local"}}]}],
        },
    }
    push = push_for([*SERVICES, vs, sidecar(egress=[{"hosts": ["./*"]}])])
    assert "httpbin.other.svc.cluster.local" in hosts(push)


def test_scoped_proxy_gets_only_its_clusters_routes_and_chains() -> None:
    push = push_for([*SERVICES, sidecar(**LOCAL_ONLY)])
    res = generate(sidecar_node(), push)
    clusters = set(res[CLUSTER_TYPE])
    assert "outbound|9080||reviews.default.svc.cluster.local" in clusters
    assert not any("other.svc" in c for c in clusters)
    assert set(res[ROUTE_TYPE]) == {"9080", "15014"}
    chains = {c.name for c in listener(res, "virtualOutbound").filter_chains}
    assert "0.0.0.0_8000" not in chains and not any(c.endswith("_5432") for c in chains)
    assert LISTENER_TYPE in res
    # ALLOW_ANY (the mesh default): what is out of scope goes out as passthrough.
    assert route_config(res, "9080").virtual_hosts[-1].name == "allow_any"


def test_egress_port_selects_the_listener() -> None:
    spec = {
        "egress": [
            {"port": {"number": 8000, "protocol": "HTTP", "name": "http"}, "hosts": ["other/*"]},
            {"hosts": ["./*"]},
        ]
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    scope = sidecar_scope(push, "default", {})
    assert [s.name for s in scope.services_on_port(8000)] == ["httpbin"]
    assert [s.name for s in scope.services_on_port(9080)] == ["productpage", "reviews"]
    assert scope.services_on_port(5432) == ()


def test_registry_only_in_the_sidecar_blocks_while_the_mesh_allows_any() -> None:
    spec = {**LOCAL_ONLY, "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(), push)
    assert unpack_tcp(listener(res, "virtualOutbound").default_filter_chain).cluster == (
        "BlackHoleCluster"
    )
    last = route_config(res, "9080").virtual_hosts[-1]
    assert last.name == "block_all" and last.routes[0].direct_response.status == 502
    # Another namespace keeps the mesh's ALLOW_ANY.
    other = generate(sidecar_node(app="x", ns="other"), push)
    assert unpack_tcp(listener(other, "virtualOutbound").default_filter_chain).cluster == (
        "PassthroughCluster"
    )


def test_mesh_config_registry_only_applies_mesh_wide() -> None:
    operator = {
        "kind": "IstioOperator",
        "metadata": {"name": "mesh", "namespace": "istio-system"},
        "spec": {"meshConfig": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}},
    }
    push = push_for([*SERVICES, operator])
    res = generate(sidecar_node(), push)
    assert unpack_tcp(listener(res, "virtualOutbound").default_filter_chain).cluster == (
        "BlackHoleCluster"
    )
    # A Sidecar's ALLOW_ANY wins for its workloads.
    push = push_for([*SERVICES, operator, sidecar(outboundTrafficPolicy={"mode": "ALLOW_ANY"})])
    res = generate(sidecar_node(), push)
    assert route_config(res, "9080").virtual_hosts[-1].name == "allow_any"


def test_explicit_mode_registry_only_answers_502_for_unknown_hosts() -> None:
    spec = {**LOCAL_ONLY, "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(interception_mode="NONE", outbound_port=15001), push)
    rc = route_config(res, "15001")
    assert rc.virtual_hosts[-1].name == "block_all"
    assert not any("httpbin" in v.name for v in rc.virtual_hosts)


def test_ingress_default_endpoint_replaces_the_inbound_ports() -> None:
    spec = {
        "ingress": [
            {
                "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                "defaultEndpoint": "127.0.0.1:8081",
            }
        ]
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(app="reviews", labels={"app": "reviews"}), push)
    c = res[CLUSTER_TYPE]["inbound|9080||"]
    addr = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (addr.address, addr.port_value) == ("127.0.0.1", 8081)
    # Only ingress: egress keeps Istio's default (everything exported).
    assert "outbound|8000||httpbin.other.svc.cluster.local" in res[CLUSTER_TYPE]


def test_ingress_to_the_workload_address_binds_to_127_0_0_6() -> None:
    spec = {
        "ingress": [
            {"port": {"number": 9080, "protocol": "HTTP"}, "defaultEndpoint": "0.0.0.0:8081"}
        ]
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(app="reviews", labels={"app": "reviews"}), push)
    c = res[CLUSTER_TYPE]["inbound|9080||"]
    addr = c.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (addr.address, addr.port_value) == ("10.1.0.10", 8081)
    assert c.upstream_bind_config.source_address.address == "127.0.0.6"


INGRESS_TLS = {
    "ingress": [
        {
            "port": {"number": 9080, "protocol": "HTTPS", "name": "external"},
            "defaultEndpoint": "0.0.0.0:8081",
            "tls": {
                "mode": "MUTUAL",
                "serverCertificate": "/etc/certs/tls.crt",
                "privateKey": "/etc/certs/tls.key",
                "caCertificates": "/etc/certs/ca.crt",
            },
        },
        {"port": {"number": 9081, "protocol": "HTTP", "name": "internal"}},
    ]
}
MESHED = {"app": "reviews", "security.istio.io/tlsMode": "istio"}


def _pa(ports: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "reviews"}}}
    spec["mtls"] = {"mode": "STRICT"}
    if ports:
        spec["portLevelMtls"] = {k: {"mode": v} for k, v in ports.items()}
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "strict", "namespace": "default"},
        "spec": spec,
    }


def _chains(res: Any) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for c in listener(res, "virtualInbound").filter_chains:
        out.setdefault(c.filter_chain_match.destination_port.value, []).append(c)
    return out


def test_ingress_tls_terminates_where_peer_authentication_disables_mesh_mtls() -> None:
    push = push_for([*SERVICES, sidecar(**INGRESS_TLS), _pa({"9080": "DISABLE"})])
    res = generate(sidecar_node(app="reviews", labels=MESHED), push)
    chains = _chains(res)
    # 9080: one chain, TLS only, terminated with the files of the Sidecar, served as HTTP
    # (HTTPS after termination) with the client certificate required (MUTUAL).
    (chain,) = chains[9080]
    assert chain.filter_chain_match.transport_protocol == "tls"
    assert not chain.filter_chain_match.application_protocols
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    cert = ctx.common_tls_context.tls_certificates[0]
    assert cert.certificate_chain.filename == "/etc/certs/tls.crt"
    assert cert.private_key.filename == "/etc/certs/tls.key"
    assert ctx.common_tls_context.validation_context.trusted_ca.filename == "/etc/certs/ca.crt"
    assert ctx.require_client_certificate.value
    assert not ctx.common_tls_context.tls_certificate_sds_secret_configs  # no mesh cert
    hcm = unpack_hcm(chain)
    assert hcm.route_config.virtual_hosts[0].routes[0].route.cluster == "inbound|9080||"
    # 9081 keeps mesh mTLS (STRICT).
    assert [c.filter_chain_match.transport_protocol for c in chains[9081]] == ["tls"]
    assert chains[9081][0].name == "inbound|9081||-mtls"
    lst = listener(res, "virtualInbound")
    assert "envoy.filters.listener.tls_inspector" in [f.name for f in lst.listener_filters]
    # The inbound cluster carries the terminated protocol (HTTP) to the defaultEndpoint.
    addr = res[CLUSTER_TYPE]["inbound|9080||"].load_assignment.endpoints[0].lb_endpoints[0]
    assert addr.endpoint.address.socket_address.port_value == 8081


def test_ingress_tls_yields_to_mesh_mtls_as_istio() -> None:
    """Where the port keeps mesh mTLS (STRICT here), Istio ignores the ingress ``tls``: the
    port has the mesh chains, serving the terminated protocol (HTTP)."""
    push = push_for([*SERVICES, sidecar(**INGRESS_TLS), _pa()])
    res = generate(sidecar_node(app="reviews", labels=MESHED), push)
    (chain,) = _chains(res)[9080]
    assert chain.name == "inbound|9080||-mtls"
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == [
        "default"
    ]
    assert unpack_hcm(chain).stat_prefix  # HTTP, not TCP


def test_ingress_tls_on_a_tls_port_and_without_a_mesh_identity() -> None:
    """A ``TLS`` port is terminated into TCP (no ALPN offered); a proxy without a workload
    identity has no mesh mTLS to keep, so its ingress ``tls`` applies under PERMISSIVE."""
    spec = {
        "ingress": [
            {
                "port": {"number": 9000, "protocol": "TLS", "name": "tls"},
                "defaultEndpoint": "127.0.0.1:9001",
                "tls": {"mode": "SIMPLE", "serverCertificate": "/c", "privateKey": "/k"},
            }
        ]
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(app="reviews", labels={"app": "reviews"}), push)
    (chain,) = _chains(res)[9000]
    assert chain.filter_chain_match.transport_protocol == "tls"
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    assert not ctx.common_tls_context.alpn_protocols
    assert not ctx.require_client_certificate.value
    assert unpack_tcp(chain).cluster == "inbound|9000||"
    # Explicit mode: the listener on the inbound port has the same TLS chain.
    node = sidecar_node(
        app="reviews",
        labels={"app": "reviews"},
        ip="127.0.0.2",
        interception_mode="NONE",
        outbound_port=15101,
        inbound_ports={9000: 15102},
    )
    lst = listener(generate(node, push), "127.0.0.2_15102")
    assert [c.filter_chain_match.transport_protocol for c in lst.filter_chains] == ["tls"]
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.tls_inspector"]


def test_capture_mode_none_egress_binds_a_listener() -> None:
    spec = {
        "egress": [
            {
                "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                "captureMode": "NONE",
                "bind": "127.0.0.1",
                "hosts": ["./*"],
            }
        ]
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(), push)
    lst = listener(res, "127.0.0.1_9080")
    assert lst.address.socket_address.port_value == 9080
    assert "9080" in res[ROUTE_TYPE]


def test_capture_mode_none_tcp_egress_forwards_to_the_imported_service() -> None:
    def bound(hosts: list[str]) -> dict[str, Any]:
        port = {"number": 5432, "protocol": "TCP", "name": "tcp"}
        return {"egress": [{"port": port, "captureMode": "NONE", "hosts": hosts}]}

    push = push_for([*SERVICES, sidecar(**bound(["other/db.other.svc.cluster.local"]))])
    res = generate(sidecar_node(), push)
    chain = listener(res, "127.0.0.1_5432").filter_chains[0]
    assert unpack_tcp(chain).cluster == "outbound|5432||db.other.svc.cluster.local"
    assert "5432" not in res[ROUTE_TYPE]
    # Nothing imported on the port: no listener.
    push = push_for([*SERVICES, sidecar(**bound(["./*"]))])
    assert "127.0.0.1_5432" not in generate(sidecar_node(), push)[LISTENER_TYPE]


def _external(name: str, host: str) -> dict[str, Any]:
    return {
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        },
    }


def test_capture_mode_none_tls_egress_forwards_by_sni() -> None:
    port = {"number": 443, "protocol": "TLS", "name": "tls"}
    spec = {
        "egress": [{"port": port, "captureMode": "NONE", "bind": "127.0.0.2", "hosts": ["./*"]}]
    }
    routed = {
        "kind": "VirtualService",
        "metadata": {"name": "b", "namespace": "default"},
        "spec": {
            "hosts": ["b.example.com"],
            "tls": [
                {
                    "match": [{"port": 443, "sniHosts": ["b.example.com"]}],
                    "route": [{"destination": {"host": "a.example.com"}}],
                }
            ],
        },
    }
    docs = [
        *SERVICES,
        _external("a", "a.example.com"),
        _external("b", "b.example.com"),
        _external("wild", "*.wild.example.com"),
        routed,
        sidecar(**spec),
    ]
    res = generate(sidecar_node(), push_for(docs))
    lst = listener(res, "127.0.0.2_443")
    assert [f.name for f in lst.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    by_sni = {
        tuple(c.filter_chain_match.server_names): unpack_tcp(c).cluster for c in lst.filter_chains
    }
    assert by_sni == {
        # b's tls rule sends its SNI to a.
        ("b.example.com",): "outbound|443||a.example.com",
        ("*.wild.example.com",): "outbound|443||*.wild.example.com",
        ("a.example.com",): "outbound|443||a.example.com",
        # No SNI claimed: the first service without tls rules, by hostname (Istio's first).
        (): "outbound|443||*.wild.example.com",
    }
    assert "443" not in res[ROUTE_TYPE]


def test_inbound_connection_pools_apply_to_the_inbound_clusters() -> None:
    """As Istio's ``InboundConnectionPoolForPort``: the ingress listener's ``connectionPool``
    for its port, else the Sidecar's ``inboundConnectionPool`` for every inbound port."""
    spec = {
        "inboundConnectionPool": {
            "tcp": {"maxConnections": 7, "connectTimeout": "3s"},
            "http": {"http1MaxPendingRequests": 5, "idleTimeout": "30s"},
        },
        "ingress": [
            {
                "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                "connectionPool": {"http": {"http2MaxRequests": 2, "maxRequestsPerConnection": 1}},
            },
            {"port": {"number": 9081, "protocol": "HTTP", "name": "http-b"}},
        ],
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    res = generate(sidecar_node(app="reviews", labels={"app": "reviews"}), push)
    own = res[CLUSTER_TYPE]["inbound|9080||"].circuit_breakers.thresholds[0]
    assert own.max_requests.value == 2
    assert own.max_connections.value == 4294967295  # the port's pool replaces the Sidecar's
    shared = res[CLUSTER_TYPE]["inbound|9081||"]
    t = shared.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_pending_requests.value) == (7, 5)
    assert shared.connect_timeout.seconds == 3
    opts = hpo.HttpProtocolOptions()
    shared.typed_extension_protocol_options[HTTP_OPTIONS_KEY].Unpack(opts)
    assert opts.common_http_protocol_options.idle_timeout.seconds == 30
    # Without a Sidecar: Istio's wide-open defaults.
    res = generate(sidecar_node(app="reviews", labels={"app": "reviews"}), push_for(SERVICES))
    t = res[CLUSTER_TYPE]["inbound|9080||"].circuit_breakers.thresholds[0]
    assert t.max_connections.value == t.max_pending_requests.value == 4294967295


def test_egress_proxy_takes_what_allow_any_would_pass_through() -> None:
    egress = "istiod.istio-system.svc.cluster.local"
    policy = {
        "mode": "ALLOW_ANY",
        "egressProxy": {"host": egress, "port": {"number": 15014}},
    }
    push = push_for([*SERVICES, sidecar(outboundTrafficPolicy=policy)])
    cluster = f"outbound|15014||{egress}"
    res = generate(sidecar_node(), push)
    assert cluster in res[CLUSTER_TYPE]
    assert unpack_tcp(listener(res, "virtualOutbound").default_filter_chain).cluster == cluster
    allow_any = route_config(res, "9080").virtual_hosts[-1]
    assert (allow_any.name, allow_any.routes[0].route.cluster) == ("allow_any", cluster)
    # Explicit mode: an unknown host now has somewhere to go.
    node = sidecar_node(interception_mode="NONE", outbound_port=15001)
    fallback = route_config(generate(node, push), "15001").virtual_hosts[-1]
    assert (fallback.domains[:], fallback.routes[0].route.cluster) == (["*"], cluster)
    # REGISTRY_ONLY has no egress proxy (refused at apply too).
    push = push_for([*SERVICES, sidecar(outboundTrafficPolicy={"mode": "REGISTRY_ONLY"})])
    assert route_config(generate(node, push), "15001").virtual_hosts[-1].name == "block_all"


def test_ingress_bind_is_where_a_proxy_without_capture_listens() -> None:
    spec = {
        "ingress": [
            {
                "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                "bind": "127.0.0.9",
                "defaultEndpoint": "127.0.0.1:8081",
            }
        ]
    }
    push = push_for([*SERVICES, sidecar(**spec)])
    node = sidecar_node(
        app="reviews",
        labels={"app": "reviews"},
        ip="127.0.0.2",
        interception_mode="NONE",
        outbound_port=15101,
        inbound_ports={9080: 15102},
    )
    lst = listener(generate(node, push), "127.0.0.9_15102")
    addr = lst.address.socket_address
    assert (addr.address, addr.port_value) == ("127.0.0.9", 15102)
    # Captured traffic matches by port only, as Istio's virtualInbound chains do.
    res = generate(sidecar_node(app="reviews", labels={"app": "reviews"}), push)
    (chain,) = _chains(res)[9080]
    assert not chain.filter_chain_match.prefix_ranges
