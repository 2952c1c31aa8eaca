"""Istio's ``MeshConfig`` (the fields Pilotfish acts on) and the ``IstioOperator`` that carries it.

There is one mesh config model: the mesh's defaults overlaid with ``spec.meshConfig`` of the
``IstioOperator`` resources in the store (``pilotfish apply -f operator.yaml`` or ``pilotfish
up -f operator.yaml``, as Istio's tutorials write them), kept in the data directory's store so
restarts and every command see it, and shown by ``pilotfish get meshconfig``. Field names are
Istio's; a field Pilotfish does not act on yet is accepted and named in a warning at apply.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field

from pilotfish.api.destinationrule import LocalityLoadBalancerSetting
from pilotfish.api.meta import Model, Resource

__all__ = [
    "BLOCKED_CIDRS_IN_JWKS_URIS",
    "BUILTIN_PROVIDERS",
    "DEFAULT_ACCESS_LOG_FORMAT",
    "PROVIDER_KINDS",
    "VALUES_MESH_KEYS",
    "VALUES_PILOT_ENV_KEYS",
    "EnvoyExternalAuthorizationGrpcProvider",
    "EnvoyExternalAuthorizationHttpProvider",
    "ExtensionProvider",
    "IPNetwork",
    "IstioOperator",
    "MeshConfig",
    "blocked_cidrs_in_jwks_uris",
    "effective_mesh_config",
    "mesh_config_from_bodies",
    "mesh_config_of_values",
    "operator_mesh_config",
    "parse_cidrs",
]

#: Istio's default text access log format (``accessLogFormat`` empty), as its proxies write it.
DEFAULT_ACCESS_LOG_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

#: Providers every mesh has without declaring them (Istio's ``prometheus`` and ``envoy``; the
#: built-in trace collector answers as ``zipkin`` and ``opentelemetry``).
BUILTIN_PROVIDERS = ("prometheus", "envoy", "zipkin", "opentelemetry")


class LogFormat(Model):
    text: str | None = None
    labels: dict[str, Any] | None = None


class EnvoyFileAccessLogProvider(Model):
    path: str = "/dev/stdout"
    logFormat: LogFormat | None = None


class EnvoyOtelAlsProvider(Model):
    service: str = ""
    port: int = 0
    logName: str | None = None
    logFormat: LogFormat | None = None


class OpenTelemetryTracingProvider(Model):
    service: str = ""
    port: int = 0
    maxTagLength: int | None = None
    http: dict[str, Any] | None = None
    resourceDetectors: dict[str, Any] | None = None


class ZipkinTracingProvider(Model):
    service: str = ""
    port: int = 0
    maxTagLength: int | None = None
    enable64bitTraceId: bool | None = None
    path: str | None = None


class PrometheusMetricsProvider(Model):
    pass


class BufferSettings(Model):
    """``includeRequestBodyInCheck`` of an external authorizer (Envoy's ``BufferSettings``)."""

    maxRequestBytes: int | None = None
    allowPartialMessage: bool | None = None
    packAsBytes: bool | None = None


class EnvoyExternalAuthorizationHttpProvider(Model):
    """``envoyExtAuthzHttp``: Envoy's ext_authz filter calling an HTTP authorizer."""

    service: str = ""
    port: int = 0
    timeout: str | None = None
    pathPrefix: str | None = None
    failOpen: bool | None = None
    clearRouteCache: bool | None = None
    statusOnError: str | None = None
    includeRequestHeadersInCheck: list[str] = Field(default_factory=list)
    includeHeadersInCheck: list[str] = Field(default_factory=list)
    includeAdditionalHeadersInCheck: dict[str, str] = Field(default_factory=dict)
    includeRequestBodyInCheck: BufferSettings | None = None
    headersToUpstreamOnAllow: list[str] = Field(default_factory=list)
    headersToDownstreamOnDeny: list[str] = Field(default_factory=list)
    headersToDownstreamOnAllow: list[str] = Field(default_factory=list)


class EnvoyExternalAuthorizationGrpcProvider(Model):
    """``envoyExtAuthzGrpc``: Envoy's ext_authz filter calling a gRPC authorizer."""

    service: str = ""
    port: int = 0
    timeout: str | None = None
    failOpen: bool | None = None
    clearRouteCache: bool | None = None
    statusOnError: str | None = None
    includeRequestBodyInCheck: BufferSettings | None = None


#: Provider kinds, in the order Istio's MeshConfig lists them.
PROVIDER_KINDS = (
    "envoyFileAccessLog",
    "envoyOtelAls",
    "opentelemetry",
    "zipkin",
    "prometheus",
    "envoyExtAuthzHttp",
    "envoyExtAuthzGrpc",
)


class ExtensionProvider(Model):
    name: str = ""
    envoyFileAccessLog: EnvoyFileAccessLogProvider | None = None
    envoyOtelAls: EnvoyOtelAlsProvider | None = None
    opentelemetry: OpenTelemetryTracingProvider | None = None
    zipkin: ZipkinTracingProvider | None = None
    prometheus: PrometheusMetricsProvider | None = None
    envoyExtAuthzHttp: EnvoyExternalAuthorizationHttpProvider | None = None
    envoyExtAuthzGrpc: EnvoyExternalAuthorizationGrpcProvider | None = None

    @property
    def kinds(self) -> list[str]:
        return [k for k in PROVIDER_KINDS if getattr(self, k) is not None]


class DefaultProviders(Model):
    metrics: list[str] = Field(default_factory=lambda: ["prometheus"])
    tracing: list[str] = Field(default_factory=list)
    accessLogging: list[str] = Field(default_factory=list)


class ZipkinAddress(Model):
    address: str = "zipkin.istio-system:9411"


class TracingConfig(Model):
    #: Percent of requests traced (Istio's default 1.0).
    sampling: float = 1.0
    zipkin: ZipkinAddress | None = None
    maxPathTagLength: int | None = None
    custom_tags: dict[str, Any] | None = None


#: Istio has many more mesh settings; they are kept (and warned about at apply), not refused.
_OPEN = ConfigDict(extra="allow")


class ProxyConfig(Model):
    model_config = {**Model.model_config, **_OPEN}

    tracing: TracingConfig | None = None
    concurrency: int | None = None
    holdApplicationUntilProxyStarts: bool | None = None
    proxyMetadata: dict[str, str] = Field(default_factory=dict)
    discoveryAddress: str | None = None
    drainDuration: str | None = None
    terminationDrainDuration: str | None = None


class OutboundTrafficPolicy(Model):
    mode: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"


class MeshConfig(Model):
    """Istio's MeshConfig: defaults are Istio's."""

    model_config = {**Model.model_config, **_OPEN}

    rootNamespace: str = "istio-system"
    trustDomain: str = "cluster.local"
    enableTracing: bool = True
    accessLogFile: str = ""
    accessLogEncoding: Literal["TEXT", "JSON"] = "TEXT"
    accessLogFormat: str = ""
    defaultConfig: ProxyConfig = Field(default_factory=ProxyConfig)
    extensionProviders: list[ExtensionProvider] = Field(default_factory=list)
    defaultProviders: DefaultProviders = Field(default_factory=DefaultProviders)
    outboundTrafficPolicy: OutboundTrafficPolicy = Field(default_factory=OutboundTrafficPolicy)
    enablePrometheusMerge: bool = True
    #: Istio's default mesh enables locality load balancing (failover needs a DestinationRule
    #: with outlier detection); ``enabled: false`` turns it off for rules that do not set it.
    localityLbSetting: LocalityLoadBalancerSetting | None = Field(
        default_factory=lambda: LocalityLoadBalancerSetting(enabled=True)
    )
    #: Pilotfish's own setting (not Istio's; off by default, as it tells callers the names of
    #: the policies that refused them): a request refused by an AuthorizationPolicy answers
    #: ``RBAC: access denied by NS/NAME (rule N)`` (a DENY rule) or names the ALLOW policies
    #: none of which matched; a token rejected by ``jwt_authn`` names its
    #: RequestAuthentication; each also in the ``x-pilotfish-denied-by`` response header.
    namePolicyInDenials: bool = False
    #: Pilotfish's own setting (not Istio's; off by default): a sidecar on a Delta xDS stream
    #: receives the clusters of HTTP services only when it first routes a request to one
    #: (Envoy's on-demand CDS), so it holds what it calls rather than the whole mesh. TCP
    #: services, gateways and SotW proxies always get every cluster (see docs/sidecar.md).
    onDemandClusters: bool = False
    #: Pilotfish's own setting (not Istio's; on by default, ``false`` opts out): a sidecar on
    #: a Delta xDS stream gets its outbound route configurations through Envoy's VHDS, each
    #: service's virtual host a resource of its own, so a VirtualService change sends each
    #: sidecar the virtual hosts it changed rather than its whole route configuration (see
    #: docs/sidecar.md and docs/benchmarks.md). Gateways and SotW proxies keep plain RDS.
    virtualHostDiscovery: bool = True

    def provider(self, name: str) -> ExtensionProvider | None:
        """The declared provider ``name``, or the built-in one of that name."""
        for p in self.extensionProviders:
            if p.name == name:
                return p
        if name == "envoy":
            return ExtensionProvider(name="envoy", envoyFileAccessLog=EnvoyFileAccessLogProvider())
        if name == "prometheus":
            return ExtensionProvider(name="prometheus", prometheus=PrometheusMetricsProvider())
        if name == "zipkin":
            host, _, port = self.zipkin_address.rpartition(":")
            return ExtensionProvider(
                name="zipkin", zipkin=ZipkinTracingProvider(service=host, port=int(port or 9411))
            )
        if name == "opentelemetry":
            host = self.zipkin_address.rpartition(":")[0]
            return ExtensionProvider(
                name="opentelemetry",
                opentelemetry=OpenTelemetryTracingProvider(service=host, port=4317),
            )
        return None

    @property
    def zipkin_address(self) -> str:
        tracing = self.defaultConfig.tracing
        zipkin = tracing.zipkin if tracing is not None else None
        return zipkin.address if zipkin is not None else ZipkinAddress().address

    @property
    def sampling(self) -> float:
        tracing = self.defaultConfig.tracing
        return tracing.sampling if tracing is not None else TracingConfig().sampling


class IstioOperatorSpec(Model):
    model_config = {**Model.model_config, **_OPEN}

    profile: str | None = None
    hub: str | None = None
    tag: Any = None
    revision: str | None = None
    meshConfig: MeshConfig | None = None
    components: dict[str, Any] | None = None
    #: Istio 1.6's addons (prometheus, tracing, kiali): the local mesh's optional parts.
    addonComponents: dict[str, Any] | None = None
    values: dict[str, Any] | None = None


class IstioOperator(Resource):
    """``install.istio.io/v1alpha1`` IstioOperator: its ``spec.meshConfig`` is the mesh config."""

    spec: IstioOperatorSpec = Field(default_factory=IstioOperatorSpec)


#: Istio's Helm ``values`` that set mesh config, and the ``meshConfig`` field each sets (the
#: demo profile's ``values.pilot.traceSampling: 100``; older tutorials'
#: ``values.global.proxy.accessLogFile``). ``spec.meshConfig`` wins over them.
VALUES_MESH_KEYS = {
    "pilot.traceSampling": "defaultConfig.tracing.sampling",
    "global.proxy.accessLogFile": "accessLogFile",
    "global.proxy.accessLogEncoding": "accessLogEncoding",
    "global.proxy.accessLogFormat": "accessLogFormat",
    "global.tracer.zipkin.address": "defaultConfig.tracing.zipkin.address",
    "global.outboundTrafficPolicy.mode": "outboundTrafficPolicy.mode",
    "global.proxy.holdApplicationUntilProxyStarts": "defaultConfig.holdApplicationUntilProxyStarts",
}


def _lookup(tree: Any, dotted: str) -> tuple[bool, Any]:
    node = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def mesh_config_of_values(values: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``meshConfig`` fields an IstioOperator's ``spec.values`` set (see
    :data:`VALUES_MESH_KEYS`), as a ``meshConfig`` mapping. Pure."""
    out: dict[str, Any] = {}
    for key, target in VALUES_MESH_KEYS.items():
        found, value = _lookup(values or {}, key)
        if not found:
            continue
        node = out
        *parents, leaf = target.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def operator_mesh_config(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One IstioOperator's ``meshConfig``: its ``spec.values`` mesh settings overlaid with its
    ``spec.meshConfig`` (which wins). Pure."""
    from_values = mesh_config_of_values(spec.get("values"))
    return _deep_merge(from_values, dict(spec.get("meshConfig") or {}))


def effective_mesh_config(mesh_configs: list[dict[str, Any]]) -> MeshConfig:
    """Istio's defaults overlaid with each ``spec.meshConfig`` given (in order, later wins,
    field by field at the top level and within ``defaultConfig``/``defaultProviders``)."""
    merged: dict[str, Any] = {}
    for raw in mesh_configs:
        for key, value in (raw or {}).items():
            if key in ("defaultConfig", "defaultProviders") and isinstance(value, dict):
                merged[key] = {**(merged.get(key) or {}), **value}
            else:
                merged[key] = value
    return MeshConfig.model_validate(merged)


def mesh_config_from_bodies(operators: Iterable[Mapping[str, Any]]) -> MeshConfig:
    """From IstioOperator bodies, applied in (namespace, name) order. Pure."""
    ordered = sorted(
        operators,
        key=lambda b: (str(b["metadata"].get("namespace") or ""), str(b["metadata"]["name"])),
    )
    return effective_mesh_config([operator_mesh_config(b.get("spec") or {}) for b in ordered])


# ---------------------------------------------------------------- istiod's environment

#: istiod's setting (``values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS``): comma-separated CIDRs
#: the control plane never fetches RequestAuthentication keys from.
BLOCKED_CIDRS_IN_JWKS_URIS = "BLOCKED_CIDRS_IN_JWKS_URIS"
#: The ``values.pilot.env.*`` keys Pilotfish acts on (other environment settings are warned
#: about at apply).
VALUES_PILOT_ENV_KEYS = (f"pilot.env.{BLOCKED_CIDRS_IN_JWKS_URIS}",)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_cidrs(text: str) -> tuple[IPNetwork, ...]:
    """``"10.0.0.0/8, 127.0.0.1"`` as networks (a bare address is a /32 or /128), as istiod
    reads ``BLOCKED_CIDRS_IN_JWKS_URIS``; ValueError names the entry that is not a CIDR."""
    nets: list[IPNetwork] = []
    for part in str(text).split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            nets.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f'"{entry}" is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)') from None
    return tuple(nets)


def blocked_cidrs_in_jwks_uris(operators: Iterable[Mapping[str, Any]]) -> str:
    """``values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS`` of the IstioOperator bodies (the last
    one in (namespace, name) order that sets it wins, as for the mesh config); "" when none
    does. Pure."""
    ordered = sorted(
        operators,
        key=lambda b: (str(b["metadata"].get("namespace") or ""), str(b["metadata"]["name"])),
    )
    value = ""
    for body in ordered:
        found, raw = _lookup((body.get("spec") or {}).get("values") or {}, VALUES_PILOT_ENV_KEYS[0])
        if found and raw is not None:
            value = str(raw)
    return value
