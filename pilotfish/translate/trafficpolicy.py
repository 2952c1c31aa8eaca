"""DestinationRule traffic policies applied to Envoy clusters and routes.

- ``effective_policy(dr, subset, port)``: Istio's merge order (top-level policy, then the port's
  ``portLevelSettings``, then the subset's policy and its port-level settings), field by field,
  as a typed ``Policy``.
- ``apply_load_balancer``: ``simple`` ROUND_ROBIN / LEAST_CONN and LEAST_REQUEST (Envoy
  LEAST_REQUEST) / RANDOM / PASSTHROUGH (ORIGINAL_DST cluster) / UNSPECIFIED (Istio's default,
  LEAST_REQUEST); ``consistentHash`` -> RING_HASH (default) or MAGLEV.
- ``route_hash_policies``: the matching route ``hash_policy`` (header, cookie, source IP,
  query parameter).
- ``apply_connection_pool``: circuit breakers, connect timeout, keepalive, HTTP options.
- ``apply_outlier_detection``: Envoy outlier detection.
- ``apply_proxy_protocol``: ``proxyProtocol`` wraps the cluster's transport sockets (TLS, mTLS
  or plaintext) in Envoy's upstream PROXY protocol socket, as Istio's
  ``applyUpstreamProxyProtocol``: each connection starts with a v1 or v2 header.
"""

from __future__ import annotations

from typing import NamedTuple

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, protocol_pb2
from envoy.config.core.v3 import proxy_protocol_pb2 as pp
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.transport_sockets.proxy_protocol.v3 import upstream_proxy_protocol_pb2 as upp
from envoy.type.v3 import percent_pb2

from pilotfish.api.destinationrule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    ProxyProtocol,
    RetryBudget,
    TrafficPolicy,
)
from pilotfish.model.config import DestinationRuleConfig
from pilotfish.translate.common import given, pack, proto_duration, u32
from pilotfish.translate.tls import raw_socket

#: Istio leaves Envoy's circuit breakers wide open unless a DestinationRule sets them.
MAX_U32 = 4294967295


class Policy(NamedTuple):
    """The DestinationRule settings that apply to one subset and port (None: not set)."""

    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    #: ``trafficPolicy.retryBudget`` (no port-level form, as Istio's API).
    retry_budget: RetryBudget | None = None

    @classmethod
    def of(cls, policy: TrafficPolicy | None) -> Policy:
        """A ``trafficPolicy``'s own settings (no port or subset merged in)."""
        return NO_POLICY.merged(policy)

    def merged(self, over: TrafficPolicy | PortTrafficPolicy | None) -> Policy:
        """These settings with each one ``over`` sets replacing ours."""
        if over is None:
            return self
        proxy_protocol = over.proxyProtocol if isinstance(over, TrafficPolicy) else None
        budget = over.retryBudget if isinstance(over, TrafficPolicy) else None
        return Policy(
            over.loadBalancer if over.loadBalancer is not None else self.load_balancer,
            over.connectionPool if over.connectionPool is not None else self.connection_pool,
            over.outlierDetection if over.outlierDetection is not None else self.outlier_detection,
            over.tls if over.tls is not None else self.tls,
            proxy_protocol if proxy_protocol is not None else self.proxy_protocol,
            budget if budget is not None else self.retry_budget,
        )


NO_POLICY = Policy()


def _port_level(policy: TrafficPolicy, port: int) -> PortTrafficPolicy | None:
    for pls in policy.portLevelSettings:
        if ((pls.port.number if pls.port is not None else None) or 0) == port:
            return pls
    return None


def effective_policy(dr: DestinationRuleConfig | None, subset: str, port: int) -> Policy:
    if dr is None:
        return NO_POLICY
    policy = NO_POLICY
    top = dr.traffic_policy
    if top is not None:
        policy = policy.merged(top).merged(_port_level(top, port))
    if subset:
        sub = dr.subset(subset)
        sub_policy = sub.trafficPolicy if sub is not None else None
        if sub_policy is not None:
            policy = policy.merged(sub_policy).merged(_port_level(sub_policy, port))
    return policy


def apply_load_balancer(cluster: cluster_pb2.Cluster, policy: Policy) -> None:
    lb = policy.load_balancer or LoadBalancerSettings()
    C = cluster_pb2.Cluster
    ch = lb.consistentHash
    if given(ch):
        if ch.maglev is not None:
            cluster.lb_policy = C.MAGLEV
            size = ch.maglev.tableSize
            if size:
                cluster.maglev_lb_config.table_size.value = size
        else:
            cluster.lb_policy = C.RING_HASH
            ring_size = ch.ringHash.minimumRingSize if ch.ringHash is not None else None
            size = ring_size or ch.minimumRingSize
            cluster.ring_hash_lb_config.minimum_ring_size.value = size or 1024
        return
    simple = lb.simple or "UNSPECIFIED"
    if simple == "ROUND_ROBIN":
        cluster.lb_policy = C.ROUND_ROBIN
    elif simple == "RANDOM":
        cluster.lb_policy = C.RANDOM
    elif simple == "PASSTHROUGH":
        cluster.ClearField("eds_cluster_config")
        cluster.ClearField("load_assignment")
        cluster.type = C.ORIGINAL_DST
        cluster.lb_policy = C.CLUSTER_PROVIDED
    else:  # LEAST_CONN, LEAST_REQUEST, UNSPECIFIED
        cluster.lb_policy = C.LEAST_REQUEST
    if cluster.lb_policy not in (C.ROUND_ROBIN, C.LEAST_REQUEST):
        return
    if cluster.lb_policy == C.ROUND_ROBIN:
        slow_start = cluster.round_robin_lb_config.slow_start_config
    else:
        slow_start = cluster.least_request_lb_config.slow_start_config
    warmup = lb.warmup
    if warmup is not None:
        # Istio's setWarmup: linear (aggression 1) from 10 % (Envoy's minimum) unless set; the
        # runtime key is one no runtime layer has, so the value is fixed.
        if warmup.duration:
            slow_start.slow_start_window.CopyFrom(proto_duration(warmup.duration))
        aggression = warmup.aggression if warmup.aggression is not None else 1.0
        slow_start.aggression.CopyFrom(
            base_pb2.RuntimeDouble(default_value=aggression, runtime_key="(")
        )
        minimum = warmup.minimumPercent if warmup.minimumPercent is not None else 10.0
        slow_start.min_weight_percent.value = minimum
    elif lb.warmupDurationSecs:
        slow_start.slow_start_window.CopyFrom(proto_duration(lb.warmupDurationSecs))


def uses_consistent_hash(policy: Policy) -> bool:
    lb = policy.load_balancer
    return lb is not None and given(lb.consistentHash)


def route_hash_policies(policy: Policy) -> list[rc.RouteAction.HashPolicy]:
    """The route ``hash_policy`` of a consistentHash load balancer (empty otherwise)."""
    ch = policy.load_balancer.consistentHash if policy.load_balancer is not None else None
    if ch is None:
        return []
    H = rc.RouteAction.HashPolicy
    if ch.httpHeaderName:
        return [H(header=H.Header(header_name=ch.httpHeaderName))]
    if given(ch.httpCookie):
        ck = ch.httpCookie
        cookie = H.Cookie(name=ck.name or "", path=ck.path or "")
        if ck.ttl:
            cookie.ttl.CopyFrom(proto_duration(ck.ttl))
        for attr in ck.attributes:
            cookie.attributes.add(name=attr.name, value=attr.value or "")
        return [H(cookie=cookie)]
    if ch.useSourceIp:
        return [H(connection_properties=H.ConnectionProperties(source_ip=True))]
    if ch.httpQueryParameterName:
        return [H(query_parameter=H.QueryParameter(name=ch.httpQueryParameterName))]
    return []


def default_circuit_breakers() -> circuit_breaker_pb2.CircuitBreakers:
    t = circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=u32(MAX_U32),
        max_pending_requests=u32(MAX_U32),
        max_requests=u32(MAX_U32),
        max_retries=u32(MAX_U32),
        track_remaining=True,
    )
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[t])


def apply_connection_pool(
    cluster: cluster_pb2.Cluster, policy: Policy, http_options: protocol_pb2.HttpProtocolOptions
) -> None:
    """Connection pool settings: circuit breaker thresholds on the cluster, HTTP common
    options into ``http_options`` (the caller packs them into the protocol options)."""
    cluster.circuit_breakers.CopyFrom(default_circuit_breakers())
    pool = policy.connection_pool
    t = cluster.circuit_breakers.thresholds[0]
    tcp = pool.tcp if pool is not None else None
    if tcp is not None:
        if tcp.maxConnections:
            t.max_connections.value = tcp.maxConnections
        if tcp.connectTimeout:
            cluster.connect_timeout.CopyFrom(proto_duration(tcp.connectTimeout))
        if tcp.maxConnectionDuration:
            http_options.max_connection_duration.CopyFrom(proto_duration(tcp.maxConnectionDuration))
        ka = tcp.tcpKeepalive
        if ka is not None:
            keep = address_pb2.TcpKeepalive()
            if ka.probes:
                keep.keepalive_probes.value = ka.probes
            if ka.time:
                keep.keepalive_time.value = int(proto_duration(ka.time).seconds)
            if ka.interval:
                keep.keepalive_interval.value = int(proto_duration(ka.interval).seconds)
            cluster.upstream_connection_options.tcp_keepalive.CopyFrom(keep)
    budget = policy.retry_budget
    if budget is not None:
        # Istio's applyRetryBudget: 20 % of active requests may be retries unless set, and at
        # least 3 concurrent retries (or minRetryConcurrency when above 0).
        percent = budget.percent if budget.percent is not None else 20.0
        t.retry_budget.budget_percent.value = percent
        t.retry_budget.min_retry_concurrency.value = budget.minRetryConcurrency or 3
    http = pool.http if pool is not None else None
    if http is not None:
        if http.http1MaxPendingRequests:
            t.max_pending_requests.value = http.http1MaxPendingRequests
        if http.http2MaxRequests:
            t.max_requests.value = http.http2MaxRequests
        if http.maxRetries:
            t.max_retries.value = http.maxRetries
        if http.maxRequestsPerConnection:
            http_options.max_requests_per_connection.value = http.maxRequestsPerConnection
        if http.idleTimeout:
            http_options.idle_timeout.CopyFrom(proto_duration(http.idleTimeout))


def wants_h2_upgrade(policy: Policy) -> bool:
    pool = policy.connection_pool
    http = pool.http if pool is not None else None
    return http is not None and http.h2UpgradePolicy == "UPGRADE"


def uses_client_protocol(policy: Policy) -> bool:
    """``useClientProtocol``: the upstream speaks the protocol the client spoke."""
    pool = policy.connection_pool
    http = pool.http if pool is not None else None
    return http is not None and bool(http.useClientProtocol)


#: Envoy's upstream PROXY protocol transport socket.
PROXY_PROTOCOL_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol"


def apply_proxy_protocol(cluster: cluster_pb2.Cluster, policy: Policy) -> None:
    """``proxyProtocol``: every transport socket of the cluster (each of its
    ``transport_socket_matches`` and its own, plaintext when unset) sends a PROXY protocol
    header first (``version`` V1, the default, or V2)."""
    if policy.proxy_protocol is None:
        return
    version = (
        pp.ProxyProtocolConfig.V2
        if policy.proxy_protocol.version == "V2"
        else pp.ProxyProtocolConfig.V1
    )

    def wrap(inner: base_pb2.TransportSocket) -> base_pb2.TransportSocket:
        config = upp.ProxyProtocolUpstreamTransport(
            config=pp.ProxyProtocolConfig(version=version), transport_socket=inner
        )
        return base_pb2.TransportSocket(name=PROXY_PROTOCOL_SOCKET, typed_config=pack(config))

    for match in cluster.transport_socket_matches:
        match.transport_socket.CopyFrom(wrap(_copy(match.transport_socket)))
    own = _copy(cluster.transport_socket) if cluster.HasField("transport_socket") else raw_socket()
    cluster.transport_socket.CopyFrom(wrap(own))


def _copy(socket: base_pb2.TransportSocket) -> base_pb2.TransportSocket:
    out = base_pb2.TransportSocket()
    out.CopyFrom(socket)
    return out


def apply_outlier_detection(cluster: cluster_pb2.Cluster, policy: Policy) -> None:
    od = policy.outlier_detection
    if not given(od):
        return
    out = outlier_detection_pb2.OutlierDetection()
    # consecutive5xxErrors wins when written, even as null; else the deprecated field.
    if "consecutive5xxErrors" in od.model_fields_set:
        five = od.consecutive5xxErrors
    else:
        five = od.consecutiveErrors
    if five is not None:
        out.consecutive_5xx.value = five
        out.enforcing_consecutive_5xx.value = 100 if five > 0 else 0
    else:
        out.enforcing_consecutive_5xx.value = 0
    gw = od.consecutiveGatewayErrors
    if gw is not None:
        out.consecutive_gateway_failure.value = gw
        out.enforcing_consecutive_gateway_failure.value = 100 if gw > 0 else 0
    if od.interval:
        out.interval.CopyFrom(proto_duration(od.interval))
    if od.baseEjectionTime:
        out.base_ejection_time.CopyFrom(proto_duration(od.baseEjectionTime))
    if od.maxEjectionPercent is not None:
        out.max_ejection_percent.value = od.maxEjectionPercent
    if od.splitExternalLocalOriginErrors:
        out.split_external_local_origin_errors = True
        if od.consecutiveLocalOriginFailures is not None:
            out.consecutive_local_origin_failure.value = od.consecutiveLocalOriginFailures
    cluster.outlier_detection.CopyFrom(out)
    if od.minHealthPercent is not None:
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent_pb2.Percent(value=float(od.minHealthPercent))
        )


__all__ = [
    "MAX_U32",
    "NO_POLICY",
    "Policy",
    "apply_connection_pool",
    "apply_load_balancer",
    "apply_outlier_detection",
    "default_circuit_breakers",
    "effective_policy",
    "route_hash_policies",
    "uses_client_protocol",
    "uses_consistent_hash",
    "wants_h2_upgrade",
]
