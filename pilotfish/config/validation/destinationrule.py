"""DestinationRule semantics, after Istio's ``ValidateDestinationRule`` and traffic policy checks.

Istio does not require subset labels (``validateSubset`` only checks that labels present are
well formed), so a subset without labels is valid here too.
"""

from __future__ import annotations

import math

from pilotfish.api.destinationrule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRule,
    LoadBalancerSettings,
    LocalityLoadBalancerSetting,
    OutlierDetection,
    TrafficPolicy,
)
from pilotfish.config.validation.common import (
    NOT_APPLIED,
    Errors,
    check_export_to,
    check_labels,
    check_selector,
    duration_error,
    fqdn_error,
    ip_error,
    is_dns1123_label,
    percent_error,
    port_error,
    wildcard_domain_error,
)

_TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


def validate_destination_rule(dr: DestinationRule, errs: Errors, namespace: str) -> None:
    spec = dr.spec
    if not spec.host:
        errs.add("spec.host", "Required value: host is required (empty domain name not allowed)")
    else:
        errs.add("spec.host", wildcard_domain_error(spec.host))
    traffic_policy(errs, "spec.trafficPolicy", spec.trafficPolicy)
    seen: set[str] = set()
    for i, subset in enumerate(spec.subsets):
        path = f"spec.subsets[{i}]"
        if subset.name in seen:
            errs.add(f"{path}.name", f"duplicate subset names: {subset.name}")
        seen.add(subset.name)
        if not subset.name:
            errs.add(f"{path}.name", "subset name cannot be empty")
        elif not is_dns1123_label(subset.name):
            errs.add(f"{path}.name", f"subset name is invalid: {subset.name}")
        check_labels(errs, f"{path}.labels", subset.labels)
        traffic_policy(errs, f"{path}.trafficPolicy", subset.trafficPolicy)
    check_export_to(errs, "spec.exportTo", namespace, spec.exportTo)
    selector = spec.workloadSelector
    if selector is not None:
        check_selector(errs, "spec.workloadSelector.matchLabels", selector.matchLabels)
        if not selector.matchLabels:
            errs.warn("spec.workloadSelector", "workload selector specified without labels")
        others = {e for e in spec.exportTo if e not in (".", namespace)}
        if others:
            errs.add(
                "spec.exportTo",
                "destination rule with workload selector cannot have exportTo beyond current "
                "namespace",
            )


def traffic_policy(errs: Errors, path: str, tp: TrafficPolicy | None) -> None:
    """Istio validateTrafficPolicy."""
    if tp is None:
        return
    if not any(
        (
            tp.loadBalancer,
            tp.connectionPool,
            tp.outlierDetection,
            tp.tls,
            tp.portLevelSettings,
            tp.tunnel,
            tp.proxyProtocol,
            tp.retryBudget,
        )
    ):
        errs.add(path, "traffic policy must have at least one field")
        return
    if tp.tunnel is not None:
        errs.warn(f"{path}.tunnel", f"{NOT_APPLIED}: upstream traffic is not tunnelled")
    if tp.tunnel is not None and tp.proxyProtocol is not None:
        errs.add(path, "tunnel and proxyProtocol must not be set together")
        return
    outlier_detection(errs, f"{path}.outlierDetection", tp.outlierDetection)
    connection_pool(errs, f"{path}.connectionPool", tp.connectionPool)
    _tcp_idle_timeout(errs, f"{path}.connectionPool", tp.connectionPool)
    load_balancer(errs, f"{path}.loadBalancer", tp.loadBalancer, tp.outlierDetection)
    client_tls(errs, f"{path}.tls", tp.tls)
    for i, pls in enumerate(tp.portLevelSettings):
        ppath = f"{path}.portLevelSettings[{i}]"
        if pls.port is None:
            errs.add(f"{ppath}.port", "portTrafficPolicy must have valid port")
        else:
            errs.add(f"{ppath}.port.number", port_error(pls.port.number))
        if (
            pls.outlierDetection is None
            and pls.connectionPool is None
            and pls.loadBalancer is None
            and pls.tls is None
        ):
            errs.add(ppath, "port traffic policy must have at least one field")
            continue
        outlier_detection(errs, f"{ppath}.outlierDetection", pls.outlierDetection)
        connection_pool(errs, f"{ppath}.connectionPool", pls.connectionPool)
        _tcp_idle_timeout(errs, f"{ppath}.connectionPool", pls.connectionPool)
        load_balancer(errs, f"{ppath}.loadBalancer", pls.loadBalancer, pls.outlierDetection)
        client_tls(errs, f"{ppath}.tls", pls.tls)
    if tp.tunnel is not None:
        t = tp.tunnel
        if t.protocol and t.protocol not in ("CONNECT", "POST"):
            errs.add(f"{path}.tunnel.protocol", 'tunnel protocol must be "CONNECT" or "POST"')
        fqdn, ip = fqdn_error(t.targetHost), ip_error(t.targetHost)
        if fqdn and ip:
            errs.add(
                f"{path}.tunnel.targetHost",
                f"tunnel target host must be valid FQDN or IP address: {fqdn}; {ip}",
            )
        if (perr := port_error(t.targetPort)) is not None:
            errs.add(f"{path}.tunnel.targetPort", f"tunnel target port is invalid: {perr}")
    budget = tp.retryBudget.percent if tp.retryBudget is not None else None
    if budget is not None and not 0 <= budget <= 100:
        errs.add(f"{path}.retryBudget.percent", "percent must be in range [0.0, 100.0]")


def _non_negative(errs: Errors, path: str, value: int | None, what: str) -> None:
    if value is not None and value < 0:
        errs.add(path, f"{what} must be non-negative")


def outlier_detection(errs: Errors, path: str, od: OutlierDetection | None) -> None:
    """Istio validateOutlierDetection."""
    if od is None:
        return
    errs.add(f"{path}.baseEjectionTime", duration_error(od.baseEjectionTime))
    errs.add(f"{path}.interval", duration_error(od.interval))
    if od.consecutiveErrors:
        errs.warn(
            f"{path}.consecutiveErrors",
            "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors "
            "or consecutive5xxErrors instead",
        )
    if not od.splitExternalLocalOriginErrors and (od.consecutiveLocalOriginFailures or 0) > 0:
        errs.add(
            f"{path}.consecutiveLocalOriginFailures",
            "outlier detection consecutive local origin failures is specified, but split "
            "external local origin errors is set to false",
        )
    for field in (
        "consecutiveLocalOriginFailures",
        "consecutiveGatewayErrors",
        "consecutive5xxErrors",
        "consecutiveErrors",
    ):
        _non_negative(errs, f"{path}.{field}", getattr(od, field), field)
    errs.add(f"{path}.maxEjectionPercent", percent_error(od.maxEjectionPercent))
    errs.add(f"{path}.minHealthPercent", percent_error(od.minHealthPercent))


def connection_pool(errs: Errors, path: str, cp: ConnectionPoolSettings | None) -> None:
    """Istio validateConnectionPool."""
    if cp is None:
        return
    if cp.http is None and cp.tcp is None:
        errs.add(path, "connection pool must have at least one field")
        return
    if (h := cp.http) is not None:
        hp = f"{path}.http"
        _non_negative(
            errs,
            f"{hp}.http1MaxPendingRequests",
            h.http1MaxPendingRequests,
            "http1 max pending requests",
        )
        _non_negative(errs, f"{hp}.http2MaxRequests", h.http2MaxRequests, "http2 max requests")
        _non_negative(
            errs,
            f"{hp}.maxRequestsPerConnection",
            h.maxRequestsPerConnection,
            "max requests per connection",
        )
        _non_negative(errs, f"{hp}.maxRetries", h.maxRetries, "max retries")
        _non_negative(
            errs, f"{hp}.maxConcurrentStreams", h.maxConcurrentStreams, "max concurrent streams"
        )
        errs.add(f"{hp}.idleTimeout", duration_error(h.idleTimeout, allow_zero=True))
        if (h2ka := h.http2KeepAlive) is not None:
            errs.add(f"{hp}.http2KeepAlive.interval", _optional_duration(h2ka.interval))
            errs.add(f"{hp}.http2KeepAlive.timeout", _optional_duration(h2ka.timeout))
            errs.warn(
                f"{hp}.http2KeepAlive",
                f"{NOT_APPLIED}: upstream HTTP/2 connections send no keepalive pings",
            )
        if h.h2UpgradePolicy == "UPGRADE" and h.useClientProtocol:
            errs.add(
                f"{hp}.useClientProtocol",
                "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
            )
    if (t := cp.tcp) is not None:
        tp = f"{path}.tcp"
        _non_negative(errs, f"{tp}.maxConnections", t.maxConnections, "max connections")
        errs.add(f"{tp}.connectTimeout", duration_error(t.connectTimeout))
        errs.add(f"{tp}.maxConnectionDuration", duration_error(t.maxConnectionDuration))
        errs.add(f"{tp}.idleTimeout", duration_error(t.idleTimeout, allow_zero=True))
        if (ka := t.tcpKeepalive) is not None:
            errs.add(f"{tp}.tcpKeepalive.time", duration_error(ka.time))
            errs.add(f"{tp}.tcpKeepalive.interval", duration_error(ka.interval))
            _non_negative(errs, f"{tp}.tcpKeepalive.probes", ka.probes, "probes")


def _tcp_idle_timeout(errs: Errors, path: str, cp: ConnectionPoolSettings | None) -> None:
    """A DestinationRule's ``tcp.idleTimeout``: not applied to the outbound TCP proxies yet."""
    if cp is not None and cp.tcp is not None and cp.tcp.idleTimeout is not None:
        errs.warn(
            f"{path}.tcp.idleTimeout",
            f"{NOT_APPLIED}: outbound TCP proxies keep Envoy's idle timeout (1 hour)",
        )


def _is_prime(x: int) -> bool:
    if 0 < x < 4:
        return True
    if x % 2 == 0:
        return False
    return all(x % f for f in range(3, math.isqrt(x) + 1, 2))


def load_balancer(
    errs: Errors, path: str, lb: LoadBalancerSettings | None, outlier: OutlierDetection | None
) -> None:
    """Istio validateLoadBalancer."""
    if lb is None:
        return
    if lb.simple is not None and lb.consistentHash is not None:
        errs.add(path, "only one of simple or consistentHash may be set")
    if (ch := lb.consistentHash) is not None:
        cpath = f"{path}.consistentHash"
        keys = [
            k
            for k in ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
            if getattr(ch, k) not in (None, False)
        ]
        if len(keys) > 1:
            errs.add(cpath, f"only one of {', '.join(keys)} may be set")
        if ch.httpCookie is not None and not ch.httpCookie.name:
            errs.add(f"{cpath}.httpCookie.name", "name required for HttpCookie")
        if ch.httpCookie is not None:
            errs.add(f"{cpath}.httpCookie.ttl", _optional_duration(ch.httpCookie.ttl))
        if ch.minimumRingSize:
            errs.warn(
                f"{cpath}.minimumRingSize",
                "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's "
                "RingHash configuration instead",
            )
            if ch.ringHash is not None or ch.maglev is not None:
                errs.add(cpath, "only one of MinimumRingSize or Maglev/Ringhash can be specified")
        if ch.ringHash is not None and ch.maglev is not None:
            errs.add(cpath, "only one of ringHash or maglev may be set")
        if (ml := ch.maglev) is not None:
            size = ml.tableSize or 0
            if size == 0:
                errs.add(f"{cpath}.maglev.tableSize", "tableSize must be set for maglev")
            if size >= 5000011:
                errs.add(
                    f"{cpath}.maglev.tableSize", "tableSize must be less than 5000011 for maglev"
                )
            if not _is_prime(size):
                errs.add(f"{cpath}.maglev.tableSize", "tableSize must be a prime number for maglev")
    locality_lb(errs, f"{path}.localityLbSetting", lb.localityLbSetting, outlier)
    errs.add(f"{path}.warmupDurationSecs", duration_error(lb.warmupDurationSecs))
    if (w := lb.warmup) is not None:
        errs.add(f"{path}.warmup.duration", duration_error(w.duration))
        if w.minimumPercent is not None and not 0 <= w.minimumPercent <= 100:
            errs.add(f"{path}.warmup.minimumPercent", "minimumPercent must be in range [0, 100]")
        if w.aggression is not None and w.aggression < 1:
            errs.add(f"{path}.warmup.aggression", "aggression must be at least 1.0")


def _optional_duration(value: str | None) -> str | None:
    """Cookie TTLs may be 0 (session cookie)."""
    if value in (None, "0", "0s"):
        return None
    return duration_error(value)


def locality_lb(
    errs: Errors,
    path: str,
    lb: LocalityLoadBalancerSetting | None,
    outlier: OutlierDetection | None,
) -> None:
    """Istio ValidateLocalityLbSetting."""
    if lb is None:
        return
    if lb.distribute and lb.failover:
        errs.add(path, "can not simultaneously specify 'distribute' and 'failover'")
        return
    if lb.failover:
        for label in lb.failoverPriority:
            if label in _TOPOLOGY_LABELS:
                errs.add(
                    f"{path}.failoverPriority",
                    f"can not simultaneously set 'failover' and topology label '{label}' in "
                    "'failover_priority'",
                )
                return
    for i, d in enumerate(lb.distribute):
        total = 0
        for loc, weight in d.to.items():
            if weight <= 0 or weight > 100:
                errs.add(
                    f"{path}.distribute[{i}].to[{loc}]", "locality weight must be in range [1, 100]"
                )
                return
            total += weight
        if total != 100:
            errs.add(f"{path}.distribute[{i}].to", f"total locality weight {total} != 100")
            return
    if (lb.failover or lb.failoverPriority) and outlier is None:
        errs.warn(path, "outlier detection policy must be provided for failover")
    for i, f in enumerate(lb.failover):
        fpath = f"{path}.failover[{i}]"
        if f.from_ == f.to:
            errs.add(fpath, "locality lb failover settings must specify different regions")
        if "/" in (f.from_ or "") or "/" in (f.to or ""):
            errs.add(fpath, "locality lb failover only specify region")
        if "*" in (f.from_ or "") or "*" in (f.to or ""):
            errs.add(fpath, "locality lb failover region should not contain '*' wildcard")


def client_tls(errs: Errors, path: str, tls: ClientTLSSettings | None) -> None:
    """Istio ValidateTLS for ClientTLSSettings."""
    if tls is None:
        return
    if tls.insecureSkipVerify:
        if tls.mode == "SIMPLE" and (
            tls.caCertificates or tls.credentialName or "subjectAltNames" in tls.model_fields_set
        ):
            errs.add(
                path,
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when "
                "InsecureSkipVerify is set true",
            )
        if tls.mode == "MUTUAL" and (
            tls.caCertificates or "subjectAltNames" in tls.model_fields_set
        ):
            errs.add(
                path,
                "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is "
                "set true",
            )
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credentialName:
        if tls.clientCertificate or tls.caCertificates or tls.privateKey or tls.caCrl:
            errs.add(
                path,
                "cannot specify client certificates or CA certificate or CA CRL If "
                "credentialName is set",
            )
        return
    if tls.mode == "MUTUAL":
        if not tls.clientCertificate:
            errs.add(f"{path}.clientCertificate", "client certificate required for mutual tls")
        if not tls.privateKey:
            errs.add(f"{path}.privateKey", "private key required for mutual tls")
