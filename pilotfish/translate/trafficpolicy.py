"""DestinationRule traffic policies applied to Envoy clusters and routes.

- ``effective_policy(dr, subset, port)``: Istio's merge order (top-level policy, then the port's
  ``portLevelSettings``, then the subset's policy and its port-level settings), field by field.
- ``apply_load_balancer``: ``simple`` ROUND_ROBIN / LEAST_CONN and LEAST_REQUEST (Envoy
  LEAST_REQUEST) / RANDOM / PASSTHROUGH (ORIGINAL_DST cluster) / UNSPECIFIED (Istio's default,
  LEAST_REQUEST); ``consistentHash`` -> RING_HASH (default) or MAGLEV.
- ``route_hash_policies``: the matching route ``hash_policy`` (header, cookie, source IP,
  query parameter).
- ``apply_connection_pool``: circuit breakers, connect timeout, keepalive, HTTP options.
- ``apply_outlier_detection``: Envoy outlier detection.
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.v3 import percent_pb2

from pilotfish.model.config import DestinationRuleConfig
from pilotfish.translate.common import istio_duration, u32

Policy = dict[str, Any]

#: Istio leaves Envoy's circuit breakers wide open unless a DestinationRule sets them.
MAX_U32 = 4294967295
_MERGED_FIELDS = ("loadBalancer", "connectionPool", "outlierDetection", "tls", "proxyProtocol")


def _port_level(policy: Policy, port: int) -> Policy:
    for pls in policy.get("portLevelSettings") or ():
        if int((pls.get("port") or {}).get("number") or 0) == port:
            return dict(pls)
    return {}


def _merge(base: Policy, over: Policy) -> Policy:
    out = dict(base)
    for f in _MERGED_FIELDS:
        if over.get(f) is not None:
            out[f] = over[f]
    return out


def effective_policy(dr: DestinationRuleConfig | None, subset: str, port: int) -> Policy:
    if dr is None:
        return {}
    top = dr.traffic_policy or {}
    policy = _merge(top, _port_level(top, port))
    if subset:
        sub = dr.subset(subset)
        sub_policy = (sub or {}).get("trafficPolicy") or {}
        if sub_policy:
            policy = _merge(policy, sub_policy)
            policy = _merge(policy, _port_level(sub_policy, port))
    return policy


def apply_load_balancer(cluster: cluster_pb2.Cluster, policy: Policy) -> None:
    lb: Policy = policy.get("loadBalancer") or {}
    C = cluster_pb2.Cluster
    ch = lb.get("consistentHash")
    if ch:
        if ch.get("maglev") is not None:
            cluster.lb_policy = C.MAGLEV
            size = (ch.get("maglev") or {}).get("tableSize")
            if size:
                cluster.maglev_lb_config.table_size.value = int(size)
        else:
            cluster.lb_policy = C.RING_HASH
            ring = ch.get("ringHash") or {}
            size = ring.get("minimumRingSize") or ch.get("minimumRingSize")
            cluster.ring_hash_lb_config.minimum_ring_size.value = int(size or 1024)
        return
    simple = str(lb.get("simple") or "UNSPECIFIED")
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
    warmup = lb.get("warmupDurationSecs") or lb.get("warmup", {}).get("duration")
    if warmup and cluster.lb_policy in (C.ROUND_ROBIN, C.LEAST_REQUEST):
        d = istio_duration(str(warmup))
        if cluster.lb_policy == C.ROUND_ROBIN:
            cluster.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(d)
        else:
            cluster.least_request_lb_config.slow_start_config.slow_start_window.CopyFrom(d)


def uses_consistent_hash(policy: Policy) -> bool:
    return bool((policy.get("loadBalancer") or {}).get("consistentHash"))


def route_hash_policies(policy: Policy) -> list[rc.RouteAction.HashPolicy]:
    """The route ``hash_policy`` of a consistentHash load balancer (empty otherwise)."""
    ch: Policy = (policy.get("loadBalancer") or {}).get("consistentHash") or {}
    H = rc.RouteAction.HashPolicy
    if ch.get("httpHeaderName"):
        return [H(header=H.Header(header_name=str(ch["httpHeaderName"])))]
    if ch.get("httpCookie"):
        ck = ch["httpCookie"]
        cookie = H.Cookie(name=str(ck.get("name") or ""), path=str(ck.get("path") or ""))
        if ck.get("ttl"):
            cookie.ttl.CopyFrom(istio_duration(str(ck["ttl"])))
        return [H(cookie=cookie)]
    if ch.get("useSourceIp"):
        return [H(connection_properties=H.ConnectionProperties(source_ip=True))]
    if ch.get("httpQueryParameterName"):
        return [H(query_parameter=H.QueryParameter(name=str(ch["httpQueryParameterName"])))]
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
    pool: Policy = policy.get("connectionPool") or {}
    tcp: Policy = pool.get("tcp") or {}
    http: Policy = pool.get("http") or {}
    t = cluster.circuit_breakers.thresholds[0]
    if tcp.get("maxConnections"):
        t.max_connections.value = int(tcp["maxConnections"])
    if tcp.get("connectTimeout"):
        cluster.connect_timeout.CopyFrom(istio_duration(str(tcp["connectTimeout"])))
    if tcp.get("maxConnectionDuration"):
        http_options.max_connection_duration.CopyFrom(
            istio_duration(str(tcp["maxConnectionDuration"]))
        )
    ka: Policy | None = tcp.get("tcpKeepalive")
    if ka is not None:
        keep = address_pb2.TcpKeepalive()
        if ka.get("probes"):
            keep.keepalive_probes.value = int(ka["probes"])
        if ka.get("time"):
            keep.keepalive_time.value = int(istio_duration(str(ka["time"])).seconds)
        if ka.get("interval"):
            keep.keepalive_interval.value = int(istio_duration(str(ka["interval"])).seconds)
        cluster.upstream_connection_options.tcp_keepalive.CopyFrom(keep)
    if http.get("http1MaxPendingRequests"):
        t.max_pending_requests.value = int(http["http1MaxPendingRequests"])
    if http.get("http2MaxRequests"):
        t.max_requests.value = int(http["http2MaxRequests"])
    if http.get("maxRetries"):
        t.max_retries.value = int(http["maxRetries"])
    if http.get("maxRequestsPerConnection"):
        http_options.max_requests_per_connection.value = int(http["maxRequestsPerConnection"])
    if http.get("idleTimeout"):
        http_options.idle_timeout.CopyFrom(istio_duration(str(http["idleTimeout"])))


def wants_h2_upgrade(policy: Policy) -> bool:
    http: Policy = (policy.get("connectionPool") or {}).get("http") or {}
    return str(http.get("h2UpgradePolicy") or "") == "UPGRADE"


def apply_outlier_detection(cluster: cluster_pb2.Cluster, policy: Policy) -> None:
    od: Policy | None = policy.get("outlierDetection")
    if not od:
        return
    out = outlier_detection_pb2.OutlierDetection()
    five = od.get("consecutive5xxErrors", od.get("consecutiveErrors"))
    if five is not None:
        n = int(five)
        out.consecutive_5xx.value = n
        out.enforcing_consecutive_5xx.value = 100 if n > 0 else 0
    else:
        out.enforcing_consecutive_5xx.value = 0
    gw = od.get("consecutiveGatewayErrors")
    if gw is not None:
        out.consecutive_gateway_failure.value = int(gw)
        out.enforcing_consecutive_gateway_failure.value = 100 if int(gw) > 0 else 0
    if od.get("interval"):
        out.interval.CopyFrom(istio_duration(str(od["interval"])))
    if od.get("baseEjectionTime"):
        out.base_ejection_time.CopyFrom(istio_duration(str(od["baseEjectionTime"])))
    if od.get("maxEjectionPercent") is not None:
        out.max_ejection_percent.value = int(od["maxEjectionPercent"])
    if od.get("splitExternalLocalOriginErrors"):
        out.split_external_local_origin_errors = True
        if od.get("consecutiveLocalOriginFailures") is not None:
            out.consecutive_local_origin_failure.value = int(od["consecutiveLocalOriginFailures"])
    cluster.outlier_detection.CopyFrom(out)
    if od.get("minHealthPercent") is not None:
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent_pb2.Percent(value=float(od["minHealthPercent"]))
        )


__all__ = [
    "MAX_U32",
    "apply_connection_pool",
    "apply_load_balancer",
    "apply_outlier_detection",
    "default_circuit_breakers",
    "effective_policy",
    "route_hash_policies",
    "uses_consistent_hash",
    "wants_h2_upgrade",
]
