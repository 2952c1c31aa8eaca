"""Clusters (CDS) and their endpoints (EDS): outbound per service port and subset, inbound per
served port, and the fixed passthrough/blackhole clusters.

Outbound: ``outbound|PORT||HOST`` for every visible service port plus
``outbound|PORT|SUBSET|HOST`` for every subset of the DestinationRule that applies. Services
with endpoints use EDS over ADS (``ClusterLoadAssignment`` named like the cluster, endpoints
filtered by the subset labels); ServiceEntries with ``resolution: DNS`` use STRICT_DNS
(``DNS_ROUND_ROBIN``: LOGICAL_DNS) with inline endpoints; ``resolution: NONE`` and wildcard
hosts are ORIGINAL_DST. Traffic policies come from ``trafficpolicy``.

The outbound set depends only on the client namespace (DestinationRule lookup and exportTo)
and, for sidecars, on their ``Sidecar`` scope (only the services it imports get clusters), so
``outbound_clusters`` is memoized per scope in the PushContext and shared by proxies;
each cluster is memoized by (host, port, subset, DestinationRule revision) and shared across
namespaces that resolve the same rule, and taken over from the previous context while its
service and endpoints are unchanged (``PushContext.reuse``).

TLS: ``upstream_transport_socket`` decides a cluster's transport socket (see ``tls``). With a
DestinationRule ``tls`` setting that wins; without one, a client that has a workload identity
uses auto mTLS: ``transport_socket_matches`` pick ISTIO_MUTUAL for endpoints labelled
``security.istio.io/tlsMode: istio`` (their load assignment carries the match metadata) and
plaintext for the others, and for meshed endpoints whose PeerAuthentication sets ``DISABLE``
on their port (workload-wide or ``portLevelMtls``), as Istio's clients do. The outbound set
is memoized per (scope, client identity, trust domain); clients without a workload
certificate never refer to the ``sds-grpc`` cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    address_pb2,
    config_source_pb2,
    health_check_pb2,
    protocol_pb2,
)
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from pilotfish.api.destinationrule import ConnectionPoolSettings
from pilotfish.api.mesh import DEFAULT_TRUST_DOMAIN
from pilotfish.api.node import DEFAULT_SYSTEM_ROOTS
from pilotfish.api.peer import ENDPOINT_FIELDS, SERVICE_FIELDS, pack_fields, workload_values
from pilotfish.api.workloads import locality_from_labels
from pilotfish.model.config import DestinationRuleConfig
from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext
from pilotfish.model.sidecar import SidecarScope
from pilotfish.registry.types import Endpoint, Protocol, Service, ServicePort
from pilotfish.translate.common import (
    BLACKHOLE_CLUSTER,
    INBOUND_PASSTHROUGH_BIND_IP,
    INBOUND_PASSTHROUGH_CLUSTER,
    PASSTHROUGH_CLUSTER,
    ClusterKey,
    duration,
    pack,
    socket_address,
)
from pilotfish.translate.locality import (
    LocalityLb,
    apply_to_cluster,
    locality_proto,
    locality_setting,
    localize,
)
from pilotfish.translate.peer_authn import DISABLE, workload_policy
from pilotfish.translate.tls import (
    UpstreamTls,
    client_tls,
    endpoint_socket_metadata,
    has_workload_identity,
    istio_mutual_context,
    istio_sni,
    socket_matches_auto,
    spiffe_uri,
    tls_socket,
)
from pilotfish.translate.trafficpolicy import (
    NO_POLICY,
    Policy,
    apply_connection_pool,
    apply_load_balancer,
    apply_outlier_detection,
    apply_proxy_protocol,
    default_circuit_breakers,
    effective_policy,
    uses_client_protocol,
    wants_h2_upgrade,
)

HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
C = cluster_pb2.Cluster


@dataclass
class ClusterSet:
    """Clusters and the load assignments their EDS names refer to."""

    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)
    endpoints: dict[str, endpoint_pb2.ClusterLoadAssignment] = field(default_factory=dict)
    #: ``kubernetes://...`` secrets the clusters' TLS settings name (served over ADS).
    credentials: set[str] = field(default_factory=set)
    #: EDS clusters whose load assignment depends on the proxy's locality: the setting and
    #: the endpoints their shared assignment was built from (see ``locality.localize``).
    localities: dict[str, tuple[LocalityLb, tuple[Endpoint, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClientTls:
    """What the client side brings to TLS: a workload certificate or not, its trust domain."""

    identity: bool = False
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    #: The CA bundle of the client's host (its system roots).
    system_roots: str = DEFAULT_SYSTEM_ROOTS


NO_CLIENT_TLS = ClientTls()


def mesh_sans(push: PushContext, service: Service, port: int, trust_domain: str) -> list[str]:
    """The SANs a client doing mesh mTLS to ``service:port`` accepts (Istio's service
    accounts of a service): the SPIFFE IDs of its meshed endpoints' service accounts, merged
    with a ServiceEntry's ``subjectAltNames``."""
    accounts = {
        spiffe_uri(trust_domain, ep.namespace, ep.service_account)
        for ep in push.endpoints(service.hostname, port)
        if has_workload_identity(ep.labels) and ep.service_account
    }
    return sorted(accounts | set(service.subject_alt_names))


def _has_meshed_endpoints(push: PushContext, service: Service, port: int) -> bool:
    return any(has_workload_identity(ep.labels) for ep in push.endpoints(service.hostname, port))


def upstream_transport_socket(
    push: PushContext,
    service: Service,
    port: ServicePort,
    subset: str,
    policy: Policy,
    client: ClientTls = NO_CLIENT_TLS,
) -> UpstreamTls:
    """The TLS of an outbound cluster: the DestinationRule's ``tls``, else auto mTLS.

    Mesh mTLS (``ISTIO_MUTUAL`` or automatic) verifies the server's certificate against the
    rule's ``subjectAltNames`` when it has some, else against ``mesh_sans`` (with none at
    all, any certificate of the mesh roots), as Istio does.

    Clusters are shared by every client namespace that resolves the same DestinationRule, so
    the answer depends on the destination, the policy and the client's TLS capability only."""
    sni = istio_sni(port.port, subset, service.hostname)
    sans = mesh_sans(push, service, port.port, client.trust_domain)
    tls = client_tls(
        policy.tls,
        sni=service.hostname,
        mesh_sni=sni,
        mesh_sans=sans,
        client_identity=client.identity,
        system_roots=client.system_roots,
    )
    if not tls.auto:
        return tls
    if not client.identity or service.mesh_external:
        return UpstreamTls()
    if not _has_meshed_endpoints(push, service, port.port):
        return UpstreamTls()
    return UpstreamTls(socket=tls_socket(istio_mutual_context(sni, sans)), auto=True)


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def mtls_disabled(push: PushContext, ep: Endpoint) -> bool:
    """Does the endpoint's workload accept plaintext only on its port (PeerAuthentication
    ``DISABLE``, workload-wide or in ``portLevelMtls``)? Automatic mTLS then sends plaintext
    to it, as Istio's clients do."""
    return workload_policy(push, ep.namespace, ep.labels).for_port(ep.target_port) == DISABLE


def load_assignment(
    name: str,
    endpoints: list[Endpoint] | tuple[Endpoint, ...],
    plaintext: Callable[[Endpoint], bool] | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """Healthy endpoints grouped by locality. Meshed endpoints carry the metadata that
    selects automatic mTLS, unless ``plaintext`` says their port accepts plaintext only.

    Unhealthy endpoints (a pod not ready, a deleted pod still draining) are left out, as
    Istio does by default (``PILOT_SEND_UNHEALTHY_ENDPOINTS=false``): sent as UNHEALTHY they
    would still count as hosts, and once fewer than half are healthy (a rollout) Envoy's
    panic threshold routes to every host, unready and terminating ones included."""
    groups: dict[str, list[ec.LbEndpoint]] = {}
    for ep in endpoints:
        if not ep.healthy:
            continue
        lb = ec.LbEndpoint(
            endpoint=ec.Endpoint(address=socket_address(ep.address, ep.port)),
            health_status=health_check_pb2.HEALTHY,
        )
        meta = endpoint_socket_metadata(ep.labels)
        if meta is not None and plaintext is not None and plaintext(ep):
            meta = None
        if meta is not None:
            lb.metadata.CopyFrom(meta)
        # Istio's destination_* labels of the client's metrics (``%METADATA(UPSTREAM_HOST:..)%``).
        lb.metadata.filter_metadata[METRICS_METADATA].update(_endpoint_values(ep))
        if ep.weight:
            lb.load_balancing_weight.value = ep.weight
        groups.setdefault(ep.locality, []).append(lb)
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for loc in sorted(groups):
        lle = cla.endpoints.add(lb_endpoints=groups[loc])
        if loc:
            lle.locality.CopyFrom(locality_proto(loc))
    return cla


#: Metadata namespace of the values Istio's metrics read from clusters and endpoints.
METRICS_METADATA = "istio"


def _endpoint_values(ep: Endpoint) -> dict[str, str]:
    values = workload_values(ep.namespace, ep.workload_name, ep.labels)
    values.pop("principal", None)  # the client reads it from the peer certificate
    # All of them in one value, so that the metrics look them up once per request.
    values["labels"] = pack_fields(values, ENDPOINT_FIELDS)
    return values


def _service_values(svc: Service) -> dict[str, str]:
    values = {"service": svc.hostname, "name": svc.name, "namespace": svc.namespace}
    return {**values, "service_labels": pack_fields(values, SERVICE_FIELDS)}


def _http_options(
    protocol: Protocol, policy: Policy, common: protocol_pb2.HttpProtocolOptions
) -> hpo.HttpProtocolOptions | None:
    if not protocol.is_http:
        return None
    opts = hpo.HttpProtocolOptions()
    pool = policy.connection_pool
    streams = pool.http.maxConcurrentStreams if pool is not None and pool.http else None
    if uses_client_protocol(policy):
        # Istio: the client's protocol wins over the port's and over h2UpgradePolicy.
        downstream = opts.use_downstream_protocol_config
        downstream.http_protocol_options.SetInParent()
        downstream.http2_protocol_options.SetInParent()
        if streams:
            downstream.http2_protocol_options.max_concurrent_streams.value = streams
    elif protocol.is_http2 or wants_h2_upgrade(policy):
        opts.explicit_http_config.http2_protocol_options.SetInParent()
        if streams:
            opts.explicit_http_config.http2_protocol_options.max_concurrent_streams.value = streams
    else:
        opts.explicit_http_config.http_protocol_options.SetInParent()
    if common.ByteSize():
        opts.common_http_protocol_options.CopyFrom(common)
    return opts


#: One outbound cluster, its load assignment (EDS clusters), the credentials its TLS names and
#: its locality load balancing (EDS clusters where it changes something).
OutboundCluster = tuple[
    cluster_pb2.Cluster,
    endpoint_pb2.ClusterLoadAssignment | None,
    tuple[str, ...],
    tuple[LocalityLb, tuple[Endpoint, ...]] | None,
]


def outbound_cluster(
    push: PushContext,
    svc: Service,
    sp: ServicePort,
    subset: str,
    dr: DestinationRuleConfig | None,
    client: ClientTls = NO_CLIENT_TLS,
) -> OutboundCluster:
    """One outbound cluster, its load assignment (EDS clusters), the credentials its TLS
    names and its locality setting."""
    name = ClusterKey.outbound(sp.port, subset, svc.hostname).name
    policy = effective_policy(dr, subset, sp.port)
    cluster = C(name=name, connect_timeout=duration(push.settings.connect_timeout_seconds))
    cluster.metadata.filter_metadata[METRICS_METADATA].update(_service_values(svc))
    eps = push.endpoints(svc.hostname, sp.port)
    if subset and dr is not None:
        sub = dr.subset(subset)
        labels = sub.labels if sub is not None else {}
        eps = tuple(e for e in eps if e.matches(labels))
    cla: endpoint_pb2.ClusterLoadAssignment | None = None
    if svc.source_kind == "ServiceEntry" and (svc.resolution == "NONE" or svc.is_wildcard):
        cluster.type = C.ORIGINAL_DST
    elif svc.source_kind == "ServiceEntry" and svc.resolution in ("DNS", "DNS_ROUND_ROBIN"):
        cluster.type = C.STRICT_DNS if svc.resolution == "DNS" else C.LOGICAL_DNS
        cluster.dns_lookup_family = C.V4_ONLY
        cluster.load_assignment.CopyFrom(load_assignment(name, eps, partial(mtls_disabled, push)))
    else:
        cluster.type = C.EDS
        cluster.eds_cluster_config.CopyFrom(
            C.EdsClusterConfig(eds_config=_ads(), service_name=name)
        )
        cla = load_assignment(name, eps, partial(mtls_disabled, push))
    if cluster.type == C.ORIGINAL_DST:
        cluster.lb_policy = C.CLUSTER_PROVIDED
    else:
        apply_load_balancer(cluster, policy)
        if cluster.type == C.ORIGINAL_DST:  # PASSTHROUGH load balancer
            cla = None
    common = protocol_pb2.HttpProtocolOptions()
    apply_connection_pool(cluster, policy, common)
    apply_outlier_detection(cluster, policy)
    opts = _http_options(sp.protocol, policy, common)
    if opts is not None:
        cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pack(opts))
    tls = upstream_transport_socket(push, svc, sp, subset, policy, client)
    if tls.socket is not None and tls.auto:
        cluster.transport_socket_matches.extend(socket_matches_auto(tls.socket))
    elif tls.socket is not None:
        cluster.transport_socket.CopyFrom(tls.socket)
    apply_proxy_protocol(cluster, policy)
    locality: tuple[LocalityLb, tuple[Endpoint, ...]] | None = None
    lb = locality_setting(
        push.mesh_config.localityLbSetting,
        policy.load_balancer.localityLbSetting if policy.load_balancer is not None else None,
        policy.outlier_detection is not None,
    )
    if lb is not None and lb.active and cla is not None:
        apply_to_cluster(cluster, lb)
        locality = (lb, tuple(eps))
    return cluster, cla, tls.credentials, locality


def _cluster_policies(push: PushContext) -> Hashable:
    """What every outbound cluster depends on besides its service, endpoints and rule: the
    mesh settings (timeouts) and the PeerAuthentications (automatic mTLS sends plaintext to a
    port they set to ``DISABLE``). A cluster is taken over from the previous context only
    while these are the same too."""

    def compute() -> Hashable:
        revisions = push.config_revisions()
        policies = tuple(
            sorted((str(k), r) for k, r in revisions.items() if k.kind == "PeerAuthentication")
        )
        mesh_locality = push.mesh_config.localityLbSetting
        return (
            push.settings,
            policies,
            mesh_locality.model_dump_json() if mesh_locality is not None else None,
        )

    return push.memo(("cluster_policies",), compute)


def outbound_clusters(
    push: PushContext,
    namespace: str,
    client: ClientTls = NO_CLIENT_TLS,
    scope: SidecarScope | None = None,
) -> ClusterSet:
    """Every outbound cluster a proxy of ``namespace`` may use: the services of its Sidecar
    ``scope`` when given (a sidecar), else every service exported to the namespace (a
    gateway). Memoized per scope (or namespace) and client TLS capability."""
    services = scope.services if scope is not None else push.visible_services(namespace)
    scope_key = scope.key if scope is not None else (namespace,)

    def compute() -> ClusterSet:
        out = ClusterSet()
        policies = _cluster_policies(push)
        for svc in services:
            dr = push.destination_rule(namespace, svc.hostname)
            key = ("service_clusters", svc.hostname, (dr.key, dr.revision) if dr else None, client)
            # Reused from the previous context when the service and its endpoints are the
            # same (the rule is in the key): one change rebuilds its service's clusters. One
            # lookup per service, not per port and subset: a connection storm makes a context
            # per debounce, and each view looks up every service again in each.
            inputs = (svc, tuple(push.endpoints(svc.hostname, sp.port) for sp in svc.ports),
                      policies)  # fmt: skip
            for cluster, cla, credentials, locality in push.reuse(
                key, inputs, partial(_service_clusters, push, svc, dr, client)
            ):
                out.clusters[cluster.name] = cluster
                out.credentials.update(credentials)
                if cla is not None:
                    out.endpoints[cluster.name] = cla
                if locality is not None:
                    out.localities[cluster.name] = locality
        for fixed in (passthrough_cluster(push), blackhole_cluster(push)):
            out.clusters[fixed.name] = fixed
        return out

    return push.memo(("outbound_clusters", scope_key, client), compute)


def _service_clusters(
    push: PushContext, svc: Service, dr: DestinationRuleConfig | None, client: ClientTls
) -> tuple[OutboundCluster, ...]:
    """Every outbound cluster of ``svc``: each port, without a subset and with each of the
    rule's subsets."""
    subsets = [""] + [s.name for s in (dr.subsets if dr else ()) if s.name]
    return tuple(
        outbound_cluster(push, svc, sp, subset, dr, client)
        for sp in svc.ports
        for subset in subsets
    )


def proxy_locality(push: PushContext, proxy: Proxy) -> str:
    """The locality of a proxy: its workload's in the registry (a pod's labels or
    annotation), else its own labels; routers from their labels."""
    for kind in ("Sidecar", "Pod"):
        w = push.registry.workloads.get(f"{kind}/{proxy.namespace}/{proxy.node.pod_name}")
        if w is not None and w.locality:
            return w.locality
    return locality_from_labels(proxy.labels)


def localized_endpoints(
    push: PushContext, proxy: Proxy, shared: ClusterSet
) -> dict[str, endpoint_pb2.ClusterLoadAssignment]:
    """The load assignments of ``shared``'s locality-balanced clusters as ``proxy`` sees them
    from its locality (shared by the proxies of one locality, and labels where
    ``failoverPriority`` compares them)."""
    here = proxy_locality(push, proxy)
    labels = tuple(sorted(proxy.labels.items()))
    out = {}
    for name, (lb, eps) in shared.localities.items():
        cla = shared.endpoints[name]
        key = ("localized", name, id(cla), here, labels if lb.needs_labels else None)
        out[name] = push.memo(key, partial(localize, cla, eps, lb, here, proxy.labels))
    return out


def passthrough_cluster(push: PushContext) -> cluster_pb2.Cluster:
    """ORIGINAL_DST to wherever the app was connecting (ALLOW_ANY)."""
    return C(
        name=PASSTHROUGH_CLUSTER,
        type=C.ORIGINAL_DST,
        lb_policy=C.CLUSTER_PROVIDED,
        connect_timeout=duration(push.settings.connect_timeout_seconds),
        circuit_breakers=default_circuit_breakers(),
    )


def blackhole_cluster(push: PushContext) -> cluster_pb2.Cluster:
    return C(
        name=BLACKHOLE_CLUSTER,
        type=C.STATIC,
        connect_timeout=duration(push.settings.connect_timeout_seconds),
    )


def inbound_passthrough_cluster(push: PushContext) -> cluster_pb2.Cluster:
    """ORIGINAL_DST for inbound traffic to ports no service declares, sourced from
    127.0.0.6 so that the capture rules let it reach the app."""
    c = passthrough_cluster(push)
    c.name = INBOUND_PASSTHROUGH_CLUSTER
    c.upstream_bind_config.CopyFrom(
        address_pb2.BindConfig(
            source_address=address_pb2.SocketAddress(
                address=INBOUND_PASSTHROUGH_BIND_IP, port_value=0
            )
        )
    )
    return c


def inbound_cluster(
    push: PushContext,
    target_port: int,
    protocol: Protocol,
    app_address: str = "127.0.0.1",
    app_port: int | None = None,
    bind_local: bool = False,
    pool: ConnectionPoolSettings | None = None,
) -> cluster_pb2.Cluster:
    """``inbound|PORT||``: the app at ``app_address:app_port`` (localhost in a pod; the
    port defaults to ``target_port``). ``bind_local``: connect from 127.0.0.6, as the inbound
    passthrough does, so that a pod's capture rules let a connection to its own address
    reach the app. ``pool``: the Sidecar's connection pool for the port (circuit breakers,
    connect timeout, keepalive, HTTP options), as on an outbound cluster."""
    name = ClusterKey.inbound(target_port).name
    cluster = C(
        name=name,
        type=C.STATIC,
        lb_policy=C.ROUND_ROBIN,
        connect_timeout=duration(push.settings.connect_timeout_seconds),
        circuit_breakers=default_circuit_breakers(),
    )
    cluster.load_assignment.CopyFrom(
        endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                ec.LocalityLbEndpoints(
                    lb_endpoints=[
                        ec.LbEndpoint(
                            endpoint=ec.Endpoint(
                                address=socket_address(app_address, app_port or target_port)
                            )
                        )
                    ]
                )
            ],
        )
    )
    if bind_local:
        cluster.upstream_bind_config.CopyFrom(
            address_pb2.BindConfig(
                source_address=address_pb2.SocketAddress(
                    address=INBOUND_PASSTHROUGH_BIND_IP, port_value=0
                )
            )
        )
    policy = NO_POLICY if pool is None else Policy(connection_pool=pool)
    common = protocol_pb2.HttpProtocolOptions()
    if pool is not None:
        apply_connection_pool(cluster, policy, common)
    opts = _http_options(protocol, policy, common)
    if opts is not None:
        cluster.typed_extension_protocol_options[HTTP_OPTIONS_KEY].CopyFrom(pack(opts))
    return cluster
