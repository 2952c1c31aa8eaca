"""What Pilotfish does with every field of every Istio kind it serves: one table.

Each field of each served Istio kind's model is listed here, per kind, as ``Model.field``
(the pydantic model class that declares it and the field's JSON name) with one decision:

- ``enforced``: translation reads it and it takes effect on the proxies;
- ``refused``: ``apply`` rejects a resource that sets it, naming the field;
- ``warned``: ``apply`` accepts the resource and warns, naming the field, that it has no effect.

The fields under a refused or warned field need no entry of their own. A unit test walks the
models and fails on any field without a decision (so a new model field needs one) and on
entries no model has; docs/configuration.md's "Field support" table is generated from here
(``python -m pilotfish.config.validation.coverage`` rewrites it) and a test keeps it in sync.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from pilotfish.api.models import MODELS

Status = Literal["enforced", "refused", "warned"]


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    note: str = ""


E = Decision("enforced")


def R(note: str) -> Decision:
    return Decision("refused", note)


def W(note: str) -> Decision:
    return Decision("warned", note)


#: The Istio kinds covered, in the order the docs list them.
COVERED_KINDS = (
    "VirtualService",
    "DestinationRule",
    "Gateway",
    "ServiceEntry",
    "WorkloadEntry",
    "Sidecar",
    "EnvoyFilter",
    "PeerAuthentication",
    "AuthorizationPolicy",
    "RequestAuthentication",
    "Telemetry",
)

# Notes too long for one table line.
_SOME_APPLY_TO_REFUSED = Decision("enforced", "EXTENSION_CONFIG and BOOTSTRAP are refused")
_GATEWAY_ONLY_WARNED = Decision("enforced", "warned when bound to gateways only")
_N1 = W("IGNORE is warned: unmatched preflights are forwarded (FORWARD, the default, is enforced)")
_N2 = W("not supported yet: SANs come from the endpoints' service accounts or a DestinationRule")
_N3 = W("values other than DEFAULT/IPTABLES: inbound traffic is captured")
_N4 = W("Pilotfish proxies report no ISTIO_VERSION, so it matches none")
_N5 = W("ignored, as Istio does not implement it; use portNumber")
_N6 = W("for waypoints and Gateway API gateways: the policy applies to no proxy")

# fmt: off
FIELDS: dict[str, dict[str, Decision]] = {
    "VirtualService": {
        "VirtualServiceSpec.hosts": E,
        "VirtualServiceSpec.gateways": E,
        "VirtualServiceSpec.http": E,
        "VirtualServiceSpec.tls": E,
        "VirtualServiceSpec.tcp": E,
        "VirtualServiceSpec.exportTo": E,
        "HTTPRoute.name": E,
        "HTTPRoute.match": E,
        "HTTPRoute.route": E,
        "HTTPRoute.redirect": E,
        "HTTPRoute.directResponse": E,
        "HTTPRoute.delegate": E,
        "HTTPRoute.rewrite": E,
        "HTTPRoute.timeout": E,
        "HTTPRoute.retries": E,
        "HTTPRoute.fault": E,
        "HTTPRoute.mirror": E,
        "HTTPRoute.mirrors": E,
        "HTTPRoute.mirrorPercent": E,
        "HTTPRoute.mirrorPercentage": E,
        "HTTPRoute.corsPolicy": E,
        "HTTPRoute.headers": E,
        "TLSRoute.match": E,
        "TLSRoute.route": E,
        "TCPRoute.match": E,
        "TCPRoute.route": E,
        "HTTPMatchRequest.name": E,
        "HTTPMatchRequest.uri": E,
        "HTTPMatchRequest.scheme": E,
        "HTTPMatchRequest.method": E,
        "HTTPMatchRequest.authority": E,
        "HTTPMatchRequest.headers": E,
        "HTTPMatchRequest.port": E,
        "HTTPMatchRequest.sourceLabels": E,
        "HTTPMatchRequest.gateways": E,
        "HTTPMatchRequest.queryParams": E,
        "HTTPMatchRequest.ignoreUriCase": E,
        "HTTPMatchRequest.withoutHeaders": E,
        "HTTPMatchRequest.sourceNamespace": E,
        "HTTPMatchRequest.statPrefix": W("no per-route stats are emitted"),
        "HTTPRouteDestination.destination": E,
        "HTTPRouteDestination.weight": E,
        "HTTPRouteDestination.headers": E,
        "HTTPRedirect.uri": E,
        "HTTPRedirect.authority": E,
        "HTTPRedirect.port": E,
        "HTTPRedirect.derivePort": W("the redirect keeps the request's port"),
        "HTTPRedirect.scheme": E,
        "HTTPRedirect.redirectCode": E,
        "HTTPDirectResponse.status": E,
        "HTTPDirectResponse.body": E,
        "Delegate.name": E,
        "Delegate.namespace": E,
        "HTTPRewrite.uri": E,
        "HTTPRewrite.authority": E,
        "HTTPRewrite.uriRegexRewrite": E,
        "HTTPRetry.attempts": E,
        "HTTPRetry.perTryTimeout": E,
        "HTTPRetry.retryOn": E,
        "HTTPRetry.retryRemoteLocalities": E,
        "HTTPRetry.retryIgnorePreviousHosts": E,
        "HTTPRetry.backoff": E,
        "HTTPFaultInjection.delay": E,
        "HTTPFaultInjection.abort": E,
        "Destination.host": E,
        "Destination.subset": E,
        "Destination.port": E,
        "HTTPMirrorPolicy.destination": E,
        "HTTPMirrorPolicy.percentage": E,
        "Percent.value": E,
        "CorsPolicy.allowOrigins": E,
        "CorsPolicy.allowOrigin": E,
        "CorsPolicy.allowMethods": E,
        "CorsPolicy.allowHeaders": E,
        "CorsPolicy.exposeHeaders": E,
        "CorsPolicy.maxAge": E,
        "CorsPolicy.allowCredentials": E,
        "CorsPolicy.unmatchedPreflights": _N1,
        "Headers.request": E,
        "Headers.response": E,
        "TLSMatchAttributes.sniHosts": E,
        "TLSMatchAttributes.destinationSubnets": _GATEWAY_ONLY_WARNED,
        "TLSMatchAttributes.port": E,
        "TLSMatchAttributes.sourceLabels": _GATEWAY_ONLY_WARNED,
        "TLSMatchAttributes.gateways": E,
        "TLSMatchAttributes.sourceNamespace": _GATEWAY_ONLY_WARNED,
        "RouteDestination.destination": E,
        "RouteDestination.weight": E,
        "L4MatchAttributes.destinationSubnets": _GATEWAY_ONLY_WARNED,
        "L4MatchAttributes.port": E,
        "L4MatchAttributes.sourceSubnet": _GATEWAY_ONLY_WARNED,
        "L4MatchAttributes.sourceLabels": _GATEWAY_ONLY_WARNED,
        "L4MatchAttributes.gateways": E,
        "L4MatchAttributes.sourceNamespace": _GATEWAY_ONLY_WARNED,
        "StringMatch.exact": E,
        "StringMatch.prefix": E,
        "StringMatch.regex": E,
        "HTTPBody.string": E,
        "HTTPBody.bytes": E,
        "RegexRewrite.match": E,
        "RegexRewrite.rewrite": E,
        "FaultDelay.fixedDelay": E,
        "FaultDelay.exponentialDelay": R("not supported yet"),
        "FaultDelay.percentage": E,
        "FaultDelay.percent": E,
        "FaultAbort.httpStatus": E,
        "FaultAbort.grpcStatus": E,
        "FaultAbort.http2Error": R('HTTP/2 abort fault injection is not supported (as Istio)'),
        "FaultAbort.percentage": E,
        "PortSelector.number": E,
        "HeaderOperations.set": E,
        "HeaderOperations.add": E,
        "HeaderOperations.remove": E,
    },
    "DestinationRule": {
        "DestinationRuleSpec.host": E,
        "DestinationRuleSpec.trafficPolicy": E,
        "DestinationRuleSpec.subsets": E,
        "DestinationRuleSpec.exportTo": E,
        "DestinationRuleSpec.workloadSelector": E,
        "TrafficPolicy.loadBalancer": E,
        "TrafficPolicy.connectionPool": E,
        "TrafficPolicy.outlierDetection": E,
        "TrafficPolicy.tls": E,
        "TrafficPolicy.portLevelSettings": E,
        "TrafficPolicy.tunnel": W("upstream traffic is not tunnelled"),
        "TrafficPolicy.proxyProtocol": E,
        "TrafficPolicy.retryBudget": W("no retry budget is set on the cluster"),
        "Subset.name": E,
        "Subset.labels": E,
        "Subset.trafficPolicy": E,
        "WorkloadSelector.matchLabels": E,
        "LoadBalancerSettings.simple": E,
        "LoadBalancerSettings.consistentHash": E,
        "LoadBalancerSettings.localityLbSetting": E,
        "LoadBalancerSettings.warmupDurationSecs": E,
        "LoadBalancerSettings.warmup": E,
        "ConnectionPoolSettings.tcp": E,
        "ConnectionPoolSettings.http": E,
        "OutlierDetection.splitExternalLocalOriginErrors": E,
        "OutlierDetection.consecutiveLocalOriginFailures": E,
        "OutlierDetection.consecutiveGatewayErrors": E,
        "OutlierDetection.consecutive5xxErrors": E,
        "OutlierDetection.interval": E,
        "OutlierDetection.baseEjectionTime": E,
        "OutlierDetection.maxEjectionPercent": E,
        "OutlierDetection.minHealthPercent": E,
        "OutlierDetection.consecutiveErrors": E,
        "ClientTLSSettings.mode": E,
        "ClientTLSSettings.clientCertificate": E,
        "ClientTLSSettings.privateKey": E,
        "ClientTLSSettings.caCertificates": E,
        "ClientTLSSettings.credentialName": E,
        "ClientTLSSettings.subjectAltNames": E,
        "ClientTLSSettings.sni": E,
        "ClientTLSSettings.insecureSkipVerify": E,
        "ClientTLSSettings.caCrl": E,
        "PortTrafficPolicy.port": E,
        "PortTrafficPolicy.loadBalancer": E,
        "PortTrafficPolicy.connectionPool": E,
        "PortTrafficPolicy.outlierDetection": E,
        "PortTrafficPolicy.tls": E,
        "ProxyProtocol.version": E,
        "ConsistentHashLB.httpHeaderName": E,
        "ConsistentHashLB.httpCookie": E,
        "ConsistentHashLB.useSourceIp": E,
        "ConsistentHashLB.httpQueryParameterName": E,
        "ConsistentHashLB.ringHash": E,
        "ConsistentHashLB.maglev": E,
        "ConsistentHashLB.minimumRingSize": E,
        "LocalityLoadBalancerSetting.distribute": E,
        "LocalityLoadBalancerSetting.failover": E,
        "LocalityLoadBalancerSetting.failoverPriority": E,
        "LocalityLoadBalancerSetting.enabled": E,
        "WarmupConfiguration.duration": E,
        "WarmupConfiguration.minimumPercent": W("slow start uses Envoy's default minimum weight"),
        "WarmupConfiguration.aggression": W("slow start uses Envoy's default aggression"),
        "TCPSettings.maxConnections": E,
        "TCPSettings.connectTimeout": E,
        "TCPSettings.tcpKeepalive": E,
        "TCPSettings.maxConnectionDuration": E,
        "TCPSettings.idleTimeout": E,
        "HTTPSettings.http1MaxPendingRequests": E,
        "HTTPSettings.http2MaxRequests": E,
        "HTTPSettings.maxRequestsPerConnection": E,
        "HTTPSettings.maxRetries": E,
        "HTTPSettings.idleTimeout": E,
        "HTTPSettings.h2UpgradePolicy": E,
        "HTTPSettings.useClientProtocol": E,
        "HTTPSettings.maxConcurrentStreams": E,
        "HTTPSettings.http2KeepAlive": W("upstream HTTP/2 connections send no keepalive pings"),
        "PortSelector.number": E,
        "HTTPCookie.name": E,
        "HTTPCookie.path": E,
        "HTTPCookie.ttl": E,
        "HTTPCookie.attributes": E,
        "RingHash.minimumRingSize": E,
        "MagLev.tableSize": E,
        "LocalityDistribute.to": E,
        "LocalityDistribute.from": E,
        "LocalityFailover.to": E,
        "LocalityFailover.from": E,
        "TcpKeepalive.probes": E,
        "TcpKeepalive.time": E,
        "TcpKeepalive.interval": E,
        "HTTPCookieAttribute.name": E,
        "HTTPCookieAttribute.value": E,
    },
    "Gateway": {
        "GatewaySpec.servers": E,
        "GatewaySpec.selector": E,
        "Server.port": E,
        "Server.bind": W("the gateway listens on every address of its host"),
        "Server.hosts": E,
        "Server.tls": E,
        "Server.defaultEndpoint": W("accepted but not applied yet"),
        "Server.name": W("stats and listeners are not named after it"),
        "Port.number": E,
        "Port.protocol": Decision("enforced", "HTTP_PROXY is warned: it gets no listener"),
        "Port.name": E,
        "Port.targetPort": R("targetPort has no impact on Gateways (as Istio)"),
        "ServerTLSSettings.httpsRedirect": E,
        "ServerTLSSettings.mode": E,
        "ServerTLSSettings.serverCertificate": E,
        "ServerTLSSettings.privateKey": E,
        "ServerTLSSettings.caCertificates": E,
        "ServerTLSSettings.caCrl": E,
        "ServerTLSSettings.credentialName": E,
        "ServerTLSSettings.credentialNames": E,
        "ServerTLSSettings.tlsCertificates": E,
        "ServerTLSSettings.subjectAltNames": E,
        "ServerTLSSettings.verifyCertificateSpki": E,
        "ServerTLSSettings.verifyCertificateHash": E,
        "ServerTLSSettings.minProtocolVersion": E,
        "ServerTLSSettings.maxProtocolVersion": E,
        "ServerTLSSettings.cipherSuites": E,
        "TLSCertificate.serverCertificate": E,
        "TLSCertificate.privateKey": E,
        "TLSCertificate.caCertificates": E,
    },
    "ServiceEntry": {
        "ServiceEntrySpec.hosts": E,
        "ServiceEntrySpec.addresses": E,
        "ServiceEntrySpec.ports": E,
        "ServiceEntrySpec.location": E,
        "ServiceEntrySpec.resolution": E,
        "ServiceEntrySpec.endpoints": E,
        "ServiceEntrySpec.workloadSelector": E,
        "ServiceEntrySpec.exportTo": E,
        "ServiceEntrySpec.subjectAltNames": _N2,
        "ServicePort.number": E,
        "ServicePort.protocol": E,
        "ServicePort.name": E,
        "ServicePort.targetPort": E,
        "WorkloadEntrySpec.address": E,
        "WorkloadEntrySpec.ports": E,
        "WorkloadEntrySpec.labels": E,
        "WorkloadEntrySpec.network": W("not supported yet: multi-network meshes"),
        "WorkloadEntrySpec.locality": E,
        "WorkloadEntrySpec.weight": E,
        "WorkloadEntrySpec.serviceAccount": E,
        "NetworkingWorkloadSelector.labels": E,
    },
    "WorkloadEntry": {
        "WorkloadEntrySpec.address": E,
        "WorkloadEntrySpec.ports": E,
        "WorkloadEntrySpec.labels": E,
        "WorkloadEntrySpec.network": W("not supported yet: multi-network meshes"),
        "WorkloadEntrySpec.locality": E,
        "WorkloadEntrySpec.weight": E,
        "WorkloadEntrySpec.serviceAccount": E,
    },
    "Sidecar": {
        "SidecarSpec.workloadSelector": E,
        "SidecarSpec.ingress": E,
        "SidecarSpec.egress": E,
        "SidecarSpec.inboundConnectionPool": W('accepted but not applied yet'),
        "SidecarSpec.outboundTrafficPolicy": E,
        "NetworkingWorkloadSelector.labels": E,
        "IstioIngressListener.port": E,
        "IstioIngressListener.bind": W("inbound listeners accept on every address"),
        "IstioIngressListener.captureMode": _N3,
        "IstioIngressListener.defaultEndpoint": E,
        "IstioIngressListener.tls": R("not supported yet: no TLS termination on Sidecar ingress"),
        "IstioIngressListener.connectionPool": W("accepted but not applied yet"),
        "IstioEgressListener.port": E,
        "IstioEgressListener.bind": E,
        "IstioEgressListener.captureMode": E,
        "IstioEgressListener.hosts": E,
        "OutboundTrafficPolicy.mode": E,
        "OutboundTrafficPolicy.egressProxy": W('accepted but not applied yet'),
        "SidecarPort.number": E,
        "SidecarPort.protocol": E,
        "SidecarPort.name": E,
        "SidecarPort.targetPort": R('targetPort has no impact on Sidecars (as Istio)'),
    },
    "EnvoyFilter": {
        "EnvoyFilterSpec.workloadSelector": E,
        "EnvoyFilterSpec.targetRefs": R("not supported yet: Gateway API gateways and waypoints"),
        "EnvoyFilterSpec.configPatches": E,
        "EnvoyFilterSpec.priority": E,
        "NetworkingWorkloadSelector.labels": E,
        "EnvoyConfigObjectPatch.applyTo": _SOME_APPLY_TO_REFUSED,
        "EnvoyConfigObjectPatch.match": E,
        "EnvoyConfigObjectPatch.patch": E,
        "EnvoyConfigObjectMatch.context": E,
        "EnvoyConfigObjectMatch.proxy": E,
        "EnvoyConfigObjectMatch.listener": E,
        "EnvoyConfigObjectMatch.routeConfiguration": E,
        "EnvoyConfigObjectMatch.cluster": E,
        "Patch.operation": E,
        "Patch.value": E,
        "Patch.filterClass": R('not supported yet'),
        "ProxyMatch.proxyVersion": _N4,
        "ProxyMatch.metadata": E,
        "ListenerMatch.portNumber": E,
        "ListenerMatch.portName": W('ignored, as Istio does not implement it; use portNumber'),
        "ListenerMatch.filterChain": E,
        "ListenerMatch.listenerFilter": E,
        "ListenerMatch.name": E,
        "RouteConfigurationMatch.portNumber": E,
        "RouteConfigurationMatch.portName": _N5,
        "RouteConfigurationMatch.gateway": R("not supported yet; use portNumber or name"),
        "RouteConfigurationMatch.vhost": E,
        "RouteConfigurationMatch.name": E,
        "ClusterMatch.portNumber": E,
        "ClusterMatch.service": E,
        "ClusterMatch.subset": E,
        "ClusterMatch.name": E,
        "FilterChainMatch.name": E,
        "FilterChainMatch.sni": E,
        "FilterChainMatch.transportProtocol": E,
        "FilterChainMatch.applicationProtocols": E,
        "FilterChainMatch.filter": E,
        "FilterChainMatch.destinationPort": E,
        "VirtualHostMatch.name": E,
        "VirtualHostMatch.domainName": E,
        "VirtualHostMatch.route": E,
        "FilterMatch.name": E,
        "FilterMatch.subFilter": E,
        "RouteMatch.name": E,
        "RouteMatch.action": E,
        "SubFilterMatch.name": E,
    },
    "PeerAuthentication": {
        "PeerAuthenticationSpec.selector": E,
        "PeerAuthenticationSpec.mtls": E,
        "PeerAuthenticationSpec.portLevelMtls": E,
        "WorkloadSelector.matchLabels": E,
        "MutualTLS.mode": E,
    },
    "AuthorizationPolicy": {
        "AuthorizationPolicySpec.selector": E,
        "AuthorizationPolicySpec.targetRef": _N6,
        "AuthorizationPolicySpec.targetRefs": _N6,
        "AuthorizationPolicySpec.rules": E,
        "AuthorizationPolicySpec.action": Decision(
            "enforced",
            "CUSTOM: the mesh config's ext_authz provider; on TCP ports gRPC providers only "
            "(HTTP ones leave TCP unchecked, as Istio; warned)",
        ),
        "AuthorizationPolicySpec.provider": E,
        "ExtensionProvider.name": E,
        "WorkloadSelector.matchLabels": E,
        "Rule.from": E,
        "Rule.to": E,
        "Rule.when": E,
        "RuleFrom.source": E,
        "RuleTo.operation": E,
        "Condition.key": E,
        "Condition.values": E,
        "Condition.notValues": E,
        "Source.principals": E,
        "Source.notPrincipals": E,
        "Source.requestPrincipals": E,
        "Source.notRequestPrincipals": E,
        "Source.namespaces": E,
        "Source.notNamespaces": E,
        "Source.ipBlocks": E,
        "Source.notIpBlocks": E,
        "Source.remoteIpBlocks": E,
        "Source.notRemoteIpBlocks": E,
        "Source.serviceAccounts": E,
        "Source.notServiceAccounts": E,
        "Source.trustDomains": E,
        "Source.notTrustDomains": E,
        "Operation.hosts": E,
        "Operation.notHosts": E,
        "Operation.ports": E,
        "Operation.notPorts": E,
        "Operation.methods": E,
        "Operation.notMethods": E,
        "Operation.paths": E,
        "Operation.notPaths": E,
    },
    "RequestAuthentication": {
        "RequestAuthenticationSpec.selector": E,
        "RequestAuthenticationSpec.targetRef": _N6,
        "RequestAuthenticationSpec.targetRefs": _N6,
        "RequestAuthenticationSpec.jwtRules": E,
        "WorkloadSelector.matchLabels": E,
        "JWTRule.issuer": E,
        "JWTRule.audiences": E,
        "JWTRule.jwksUri": E,
        "JWTRule.jwks": E,
        "JWTRule.fromHeaders": E,
        "JWTRule.fromParams": E,
        "JWTRule.fromCookies": E,
        "JWTRule.outputPayloadToHeader": E,
        "JWTRule.outputClaimToHeaders": E,
        "JWTRule.forwardOriginalToken": E,
        "JWTRule.timeout": W("the control plane fetches the keys with its own timeout"),
        "JWTRule.spaceDelimitedClaims": E,
        "JWTHeader.name": E,
        "JWTHeader.prefix": E,
        "ClaimToHeader.header": E,
        "ClaimToHeader.claim": E,
    },
    "Telemetry": {
        "TelemetrySpec.selector": E,
        "TelemetrySpec.targetRef": E,
        "TelemetrySpec.targetRefs": E,
        "TelemetrySpec.tracing": E,
        "TelemetrySpec.metrics": E,
        "TelemetrySpec.accessLogging": E,
        "WorkloadSelector.matchLabels": E,
        "PolicyTargetReference.group": E,
        "PolicyTargetReference.kind": E,
        "PolicyTargetReference.name": E,
        "PolicyTargetReference.namespace": E,
        "Tracing.match": E,
        "Tracing.providers": E,
        "Tracing.randomSamplingPercentage": E,
        "Tracing.disableSpanReporting": E,
        "Tracing.customTags": E,
        "Tracing.useRequestIdForTraceSampling": W("sampling does not depend on x-request-id"),
        "Tracing.enableIstioTags": W("the tags Pilotfish adds to spans are always on"),
        "Metrics.providers": E,
        "Metrics.overrides": E,
        "Metrics.reportingInterval": W("proxies report on Envoy's default interval"),
        "AccessLogging.match": E,
        "AccessLogging.providers": E,
        "AccessLogging.disabled": E,
        "AccessLogging.filter": E,
        "TracingSelector.mode": E,
        "ProviderRef.name": E,
        "CustomTag.literal": E,
        "CustomTag.environment": E,
        "CustomTag.header": E,
        "MetricsOverrides.match": E,
        "MetricsOverrides.disabled": E,
        "MetricsOverrides.tagOverrides": E,
        "AccessLogSelector.mode": E,
        "AccessLogFilter.expression": E,
        "LiteralTag.value": E,
        "EnvironmentTag.name": E,
        "EnvironmentTag.defaultValue": E,
        "RequestHeaderTag.name": E,
        "RequestHeaderTag.defaultValue": E,
        "MetricSelector.metric": E,
        "MetricSelector.customMetric": E,
        "MetricSelector.mode": E,
        "TagOverride.operation": E,
        "TagOverride.value": E,
    },
}
# fmt: on


def _models_in(t: object) -> list[type[BaseModel]]:
    origin = typing.get_origin(t)
    if origin is Literal:
        return []
    if origin is not None or isinstance(t, types.UnionType):
        return [m for a in typing.get_args(t) for m in _models_in(a)]
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [t]
    return []


def _container_suffix(t: object) -> str:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(t):
            if _models_in(a):
                return _container_suffix(a)
        return ""
    if origin in (list, tuple, set, frozenset):
        return "[]"
    if origin is dict:
        return "{}"
    return ""


def walk(kind: str) -> list[tuple[str, str, Decision | None]]:
    """``(Model.field, first path, decision)`` for every field of ``kind``'s spec that is
    reached, breadth first; a refused or warned field's subtree is not entered."""
    spec = MODELS[kind].model_fields["spec"].annotation
    table = FIELDS.get(kind, {})
    out: list[tuple[str, str, Decision | None]] = []
    seen: set[str] = set()
    queue = [("spec", m) for m in _models_in(spec)]
    visited: set[type[BaseModel]] = set()
    while queue:
        prefix, model = queue.pop(0)
        if model in visited:
            continue
        visited.add(model)
        for name, info in model.model_fields.items():
            field = info.alias or name
            key = f"{model.__name__}.{field}"
            path = f"{prefix}.{field}"
            decision = table.get(key)
            if key not in seen:
                seen.add(key)
                out.append((key, path, decision))
            if decision is None or decision.status == "enforced":
                suffix = _container_suffix(info.annotation)
                queue.extend((path + suffix, m) for m in _models_in(info.annotation))
    return out


def counts() -> dict[str, dict[Status, int]]:
    """Per kind, how many fields are enforced, refused and warned."""
    result: dict[str, dict[Status, int]] = {}
    for kind in COVERED_KINDS:
        c: dict[Status, int] = {"enforced": 0, "refused": 0, "warned": 0}
        for _, _, d in walk(kind):
            if d is not None:
                c[d.status] += 1
        result[kind] = c
    return result


DOCS_BEGIN = "<!-- field-support:begin -->\n"
DOCS_END = "<!-- field-support:end -->"


def markdown() -> str:
    """The "Field support" tables of docs/configuration.md."""
    lines: list[str] = []
    for kind in COVERED_KINDS:
        c = counts()[kind]
        lines += [
            f"### {kind}",
            "",
            f"{c['enforced']} enforced, {c['refused']} refused, {c['warned']} warned.",
            "",
            "| field | at apply | note |",
            "| --- | --- | --- |",
        ]
        for _, path, d in walk(kind):
            if d is not None:
                lines.append(f"| `{path}` | {d.status} | {d.note} |")
        lines.append("")
    return "\n".join(lines)


def write_docs(path: str = "docs/configuration.md") -> None:
    """Replace the generated block of ``path`` with :func:`markdown`."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, rest = text.split(DOCS_BEGIN, 1)
    _, tail = rest.split(DOCS_END, 1)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + DOCS_BEGIN + markdown() + DOCS_END + tail)


if __name__ == "__main__":
    write_docs()
