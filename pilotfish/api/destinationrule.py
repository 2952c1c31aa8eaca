"""DestinationRule (networking.istio.io): policies applied after routing.

Load balancing, connection pools, outlier detection, client TLS, per-port settings and
subsets, with Istio's ``destination_rule.proto`` JSON field names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.duration import Duration
from pilotfish.api.meta import Model, Resource, WorkloadSelector
from pilotfish.api.virtualservice import PortSelector


class HTTPCookieAttribute(Model):
    name: str
    value: str | None = None


class HTTPCookie(Model):
    name: str
    path: str | None = None
    ttl: Duration | None = None
    attributes: list[HTTPCookieAttribute] = Field(default_factory=list)


class RingHash(Model):
    minimumRingSize: int | None = None


class MagLev(Model):
    tableSize: int | None = None


class ConsistentHashLB(Model):
    httpHeaderName: str | None = None
    httpCookie: HTTPCookie | None = None
    useSourceIp: bool | None = None
    httpQueryParameterName: str | None = None
    ringHash: RingHash | None = None
    maglev: MagLev | None = None
    minimumRingSize: int | None = None


class LocalityDistribute(Model):
    to: dict[str, int] = Field(default_factory=dict)
    from_: str | None = Field(default=None, alias="from")


class LocalityFailover(Model):
    to: str | None = None
    from_: str | None = Field(default=None, alias="from")


class LocalityLoadBalancerSetting(Model):
    distribute: list[LocalityDistribute] = Field(default_factory=list)
    failover: list[LocalityFailover] = Field(default_factory=list)
    failoverPriority: list[str] = Field(default_factory=list)
    enabled: bool | None = None


class WarmupConfiguration(Model):
    duration: Duration | None = None
    minimumPercent: float | None = None
    aggression: float | None = None


SimpleLB = Literal[
    "UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"
]


class LoadBalancerSettings(Model):
    simple: SimpleLB | None = None
    consistentHash: ConsistentHashLB | None = None
    localityLbSetting: LocalityLoadBalancerSetting | None = None
    warmupDurationSecs: Duration | None = None
    warmup: WarmupConfiguration | None = None


class TcpKeepalive(Model):
    probes: int | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(Model):
    maxConnections: int | None = None
    connectTimeout: Duration | None = None
    tcpKeepalive: TcpKeepalive | None = None
    maxConnectionDuration: Duration | None = None
    idleTimeout: Duration | None = None


class ConnectionKeepalive(Model):
    """HTTP/2 keepalive pings on upstream connections (Istio 1.28+)."""

    interval: Duration | None = None
    timeout: Duration | None = None


class HTTPSettings(Model):
    http1MaxPendingRequests: int | None = None
    http2MaxRequests: int | None = None
    maxRequestsPerConnection: int | None = None
    maxRetries: int | None = None
    idleTimeout: Duration | None = None
    h2UpgradePolicy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    useClientProtocol: bool | None = None
    maxConcurrentStreams: int | None = None
    http2KeepAlive: ConnectionKeepalive | None = None


class ConnectionPoolSettings(Model):
    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(Model):
    splitExternalLocalOriginErrors: bool | None = None
    consecutiveLocalOriginFailures: int | None = None
    consecutiveGatewayErrors: int | None = None
    consecutive5xxErrors: int | None = None
    interval: Duration | None = None
    baseEjectionTime: Duration | None = None
    maxEjectionPercent: int | None = None
    minHealthPercent: int | None = None
    consecutiveErrors: int | None = None


class ClientTLSSettings(Model):
    mode: Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"] | None = None
    clientCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None
    credentialName: str | None = None
    subjectAltNames: list[str] = Field(default_factory=list)
    sni: str | None = None
    insecureSkipVerify: bool | None = None
    caCrl: str | None = None


class PortTrafficPolicy(Model):
    port: PortSelector | None = None
    loadBalancer: LoadBalancerSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None
    outlierDetection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TunnelSettings(Model):
    protocol: str | None = None
    targetHost: str
    targetPort: int


class ProxyProtocol(Model):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(Model):
    percent: float | None = None
    minRetryConcurrency: int | None = None


class TrafficPolicy(Model):
    loadBalancer: LoadBalancerSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None
    outlierDetection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    portLevelSettings: list[PortTrafficPolicy] = Field(default_factory=list)
    tunnel: TunnelSettings | None = None
    proxyProtocol: ProxyProtocol | None = None
    retryBudget: RetryBudget | None = None


class Subset(Model):
    name: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    trafficPolicy: TrafficPolicy | None = None


class DestinationRuleSpec(Model):
    host: str = ""
    trafficPolicy: TrafficPolicy | None = None
    subsets: list[Subset] = Field(default_factory=list)
    exportTo: list[str] = Field(default_factory=list)
    workloadSelector: WorkloadSelector | None = None


class DestinationRule(Resource):
    spec: DestinationRuleSpec = Field(default_factory=DestinationRuleSpec)
    status: dict[str, Any] | None = None
