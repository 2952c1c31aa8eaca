"""What Pilotfish does with every field of every kind it serves: one table.

Each field of each appliable kind's model is listed here, per kind, as ``Model.field`` (the
pydantic model class that declares it and the field's JSON name) with one decision:

- ``enforced``: it is read and takes effect (on the proxies, the local runtime, the canary
  controller or the mesh config);
- ``refused``: ``apply`` rejects a resource that sets it, naming the field;
- ``warned``: ``apply`` accepts the resource and warns, naming the field, that it has no effect.

A kind's fields are those of its ``spec`` and its other top-level fields (a Secret's ``data``);
``apiVersion``, ``kind``, ``metadata`` (one table for every kind: :data:`METADATA`) and the
``status`` controllers write are not. The fields under a refused or warned field need no entry
of their own, nor do those under a field whose subtree another kind's table decides
(``see``: a Canary's ``service.trafficPolicy`` is a DestinationRule's). Kinds users do not
apply (:data:`RUNTIME_KINDS`: the runtime writes them) have no table.

For the Istio kinds, each validator warns about its warned fields by hand (some only for
particular values). For the other kinds (:data:`TABLE_WARNED_KINDS`) the warnings come from
this table: :func:`unapplied` names every warned field a resource sets, unless its value is
one that behaves as Pilotfish does anyway (``quiet``: ``restartPolicy: Always``).

A unit test walks the models and fails on a served kind without a table, on any field without
a decision (so a new model field needs one) and on entries no model has; docs/configuration.md's
"Field support" table is generated from here (``python -m pilotfish.config.validation.coverage``
rewrites it) and a test keeps it in sync.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from pilotfish.api.meta import ObjectMeta
from pilotfish.api.models import MODELS
from pilotfish.errors import FieldError

Status = Literal["enforced", "refused", "warned"]


@dataclass(frozen=True, slots=True)
class Decision:
    status: Status
    note: str = ""
    #: Values of a warned field that behave as Pilotfish does anyway: no warning for them.
    quiet: tuple[Any, ...] = ()
    #: The kind whose table decides the fields under this one (not walked here).
    see: str = ""
    #: A field of the same object that, when set, makes this warned field quiet (a
    #: container's ``image`` only names what its ``command`` stands for).
    quiet_with: str = ""


E = Decision("enforced")


def R(note: str) -> Decision:
    return Decision("refused", note)


def W(note: str, *quiet: Any) -> Decision:
    return Decision("warned", note, quiet)


def S(kind: str) -> Decision:
    """Enforced, the fields under it as ``kind``'s table says."""
    return Decision("enforced", f"its fields as in {kind}", see=kind)


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
    "WorkloadGroup",
    "IstioOperator",
    "Namespace",
    "Service",
    "ServiceAccount",
    "Secret",
    "Deployment",
    "Canary",
    "MetricTemplate",
)
#: Kinds the runtime writes and users do not apply (``apply`` refuses them): no table.
RUNTIME_KINDS = ("Pod", "Event")
#: Kinds whose warned fields are named at apply by :func:`unapplied` (the Istio kinds'
#: validators warn by hand).
TABLE_WARNED_KINDS = COVERED_KINDS[COVERED_KINDS.index("WorkloadGroup") :]

# Notes too long for one table line.
_SOME_APPLY_TO_REFUSED = Decision("enforced", "BOOTSTRAP is warned: applied at proxy start")
_GATEWAY_ONLY_WARNED = Decision("enforced", "warned when bound to gateways only")
_N3 = W("values other than DEFAULT/IPTABLES: inbound traffic is captured")
_N4 = W("Pilotfish proxies report no ISTIO_VERSION, so it matches none")
_N5 = W("ignored, as Istio does not implement it; use portNumber")
_TELEMETRY_TARGET = Decision(
    "enforced", "the Gateway istio-ingressgateway; others are warned: they name no proxy"
)
_N6 = W("for waypoints and Gateway API gateways: the policy applies to no proxy")

# Notes of the kinds whose warnings come from this table.
_STORE_WRITES = "written by the store: a value given is replaced (as Kubernetes)"
_INSTALL_ONLY = W("takes effect only through `pilotfish install -f`")
_OWN_PARTS = W("Pilotfish runs its own components")
_VALUES = "the mesh settings and pilot.env keys of docs/operating.md; others are warned"
_TAG_LENGTH = W("span tags keep Envoy's default length")
_ROUTE_CACHE = W("the route is not chosen again after the check", False)
_TRUST_DOMAIN = "not supported yet: the mesh CA's trust domain is cluster.local"
_PROBE = "fields the agent does not run are refused"
_READ_SECRET_TYPES = ("Opaque", "kubernetes.io/tls", "istio.io/key-and-cert")
_REVERT = "true is not run yet: a deleted Canary leaves its objects"
_STORE_REVISION = "written by the store; a PUT with it is conditional"
_OWNERS = "a pod's Deployment, a Canary's objects; others are not deleted with their owner"
_HEADLESS = "None (headless) is warned: the name does not resolve to the pods"
_SVC_IP = "the Service is reached at its cluster IP only"
_NO_IMAGES = "images are not pulled: the local runtime runs the container's command"
#: Quiet when the container has a command: the image then only names what it stands for.
_IMAGE = Decision("warned", _NO_IMAGES + " (warned without a command)", quiet_with="command")
_ONE_NODE = "the local runtime is one node: pods are not scheduled"
_NO_SHARING = "each pod has its own processes"
_NO_MOUNTS = "nothing is mounted: containers see the host's files"
_NO_LIMITS = "no resource limits are applied"
_NO_MESSAGE = "no termination message is read"
_NO_TTY = "containers get no terminal or stdin"
_EMPTY_VALUE = "the variable is set to an empty string"
_FIELD_REFS = (
    "metadata.name, metadata.namespace, metadata.labels['...'], status.podIP, "
    "spec.serviceAccountName, spec.nodeName; other paths are warned"
)
_PORTS_READY = "a container is ready when its ports accept connections"
_OWN_SCHEDULE = "probes run on the runtime's own schedule"
_NOT_CHECKED = "not checked"
_NO_SANDBOX = "containers are processes run as their user, with no other sandbox"
_VS_ONLY = "not run: Pilotfish routes with Istio VirtualServices"
_ALL_READY = "every pod must be ready"

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
        "HTTPMatchRequest.statPrefix": E,
        "HTTPRouteDestination.destination": E,
        "HTTPRouteDestination.weight": E,
        "HTTPRouteDestination.headers": E,
        "HTTPRedirect.uri": E,
        "HTTPRedirect.authority": E,
        "HTTPRedirect.port": E,
        "HTTPRedirect.derivePort": E,
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
        "CorsPolicy.unmatchedPreflights": E,
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
        "TrafficPolicy.retryBudget": E,
        "RetryBudget.percent": E,
        "RetryBudget.minRetryConcurrency": E,
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
        "WarmupConfiguration.minimumPercent": E,
        "WarmupConfiguration.aggression": E,
        "TCPSettings.maxConnections": E,
        "TCPSettings.connectTimeout": E,
        "TCPSettings.tcpKeepalive": E,
        "TCPSettings.maxConnectionDuration": E,
        "TCPSettings.idleTimeout": W("outbound TCP proxies keep Envoy's idle timeout (1 hour)"),
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
        "ServiceEntrySpec.subjectAltNames": E,
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
        "SidecarSpec.inboundConnectionPool": E,
        "SidecarSpec.outboundTrafficPolicy": E,
        "NetworkingWorkloadSelector.labels": E,
        "IstioIngressListener.port": E,
        "IstioIngressListener.bind": E,
        "IstioIngressListener.captureMode": _N3,
        "IstioIngressListener.defaultEndpoint": E,
        "IstioIngressListener.tls": E,
        "ServerTLSSettings.httpsRedirect": R("as Istio: not supported on Sidecar ingress"),
        "ServerTLSSettings.mode": E,
        "ServerTLSSettings.serverCertificate": E,
        "ServerTLSSettings.privateKey": E,
        "ServerTLSSettings.caCertificates": E,
        "ServerTLSSettings.caCrl": E,
        "ServerTLSSettings.credentialName": R("as Istio: not supported on Sidecar ingress"),
        "ServerTLSSettings.credentialNames": R("as Istio: not supported on Sidecar ingress"),
        "ServerTLSSettings.tlsCertificates": R("as Istio: not supported on Sidecar ingress"),
        "ServerTLSSettings.subjectAltNames": R("as Istio: not supported on Sidecar ingress"),
        "ServerTLSSettings.verifyCertificateSpki": E,
        "ServerTLSSettings.verifyCertificateHash": E,
        "ServerTLSSettings.minProtocolVersion": E,
        "ServerTLSSettings.maxProtocolVersion": E,
        "ServerTLSSettings.cipherSuites": E,
        "IstioIngressListener.connectionPool": E,
        "ConnectionPoolSettings.tcp": E,
        "ConnectionPoolSettings.http": E,
        "TCPSettings.maxConnections": E,
        "TCPSettings.connectTimeout": E,
        "TCPSettings.tcpKeepalive": E,
        "TCPSettings.maxConnectionDuration": E,
        "TCPSettings.idleTimeout": W("as Istio: inbound TCP proxies have no idle timeout from it"),
        "TcpKeepalive.probes": E,
        "TcpKeepalive.time": E,
        "TcpKeepalive.interval": E,
        "HTTPSettings.http1MaxPendingRequests": E,
        "HTTPSettings.http2MaxRequests": E,
        "HTTPSettings.maxRequestsPerConnection": E,
        "HTTPSettings.maxRetries": E,
        "HTTPSettings.idleTimeout": E,
        "HTTPSettings.h2UpgradePolicy": E,
        "HTTPSettings.useClientProtocol": E,
        "HTTPSettings.maxConcurrentStreams": E,
        "HTTPSettings.http2KeepAlive": W("upstream HTTP/2 connections send no keepalive pings"),
        "IstioEgressListener.port": E,
        "IstioEgressListener.bind": E,
        "IstioEgressListener.captureMode": E,
        "IstioEgressListener.hosts": E,
        "OutboundTrafficPolicy.mode": E,
        "OutboundTrafficPolicy.egressProxy": E,
        "Destination.host": E,
        "Destination.subset": E,
        "Destination.port": E,
        "PortSelector.number": E,
        "SidecarPort.number": E,
        "SidecarPort.protocol": E,
        "SidecarPort.name": E,
        "SidecarPort.targetPort": R('targetPort has no impact on Sidecars (as Istio)'),
    },
    "EnvoyFilter": {
        "EnvoyFilterSpec.workloadSelector": E,
        "EnvoyFilterSpec.targetRefs": W(
            "for waypoints and Gateway API gateways: the filter applies to no proxy"
        ),
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
        "RouteConfigurationMatch.gateway": E,
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
        "TelemetrySpec.targetRef": _TELEMETRY_TARGET,
        "TelemetrySpec.targetRefs": _TELEMETRY_TARGET,
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
    "WorkloadGroup": {
        "WorkloadGroupSpec.metadata": E,
        "WorkloadGroupSpec.template": E,
        "WorkloadGroupSpec.probe": Decision("enforced", _PROBE),
        "WorkloadGroupObjectMeta.labels": E,
        "WorkloadGroupObjectMeta.annotations": E,
        "WorkloadEntrySpec.address": R("set by the registering workload: must be empty"),
        "WorkloadEntrySpec.ports": E,
        "WorkloadEntrySpec.labels": E,
        "WorkloadEntrySpec.network": W("not supported yet: multi-network meshes"),
        "WorkloadEntrySpec.locality": E,
        "WorkloadEntrySpec.weight": E,
        "WorkloadEntrySpec.serviceAccount": E,
    },
    "IstioOperator": {
        "IstioOperatorSpec.profile": _INSTALL_ONLY,
        "IstioOperatorSpec.hub": _OWN_PARTS,
        "IstioOperatorSpec.tag": _OWN_PARTS,
        "IstioOperatorSpec.revision": _OWN_PARTS,
        "IstioOperatorSpec.meshConfig": Decision("enforced", "fields not listed here are warned"),
        "IstioOperatorSpec.components": _INSTALL_ONLY,
        "IstioOperatorSpec.addonComponents": _INSTALL_ONLY,
        "IstioOperatorSpec.values": Decision("enforced", _VALUES),
        "MeshConfig.rootNamespace": E,
        "MeshConfig.trustDomain": W(_TRUST_DOMAIN, "cluster.local"),
        "MeshConfig.enableTracing": E,
        "MeshConfig.accessLogFile": E,
        "MeshConfig.accessLogEncoding": E,
        "MeshConfig.accessLogFormat": E,
        "MeshConfig.defaultConfig": Decision("enforced", "fields not listed here are warned"),
        "MeshConfig.extensionProviders": E,
        "MeshConfig.defaultProviders": E,
        "MeshConfig.outboundTrafficPolicy": E,
        "MeshConfig.enablePrometheusMerge": W("the agent always merges the app's metrics", True),
        "MeshConfig.localityLbSetting": S("DestinationRule"),
        "MeshConfig.namePolicyInDenials": E,
        "MeshConfig.onDemandClusters": E,
        "MeshConfig.virtualHostDiscovery": Decision(
            "enforced", "Pilotfish's own: on for sidecars on Delta xDS unless false"
        ),
        "ProxyConfig.tracing": E,
        "ProxyConfig.concurrency": W("Envoy runs with its own number of workers"),
        "ProxyConfig.holdApplicationUntilProxyStarts": E,
        "ProxyConfig.proxyMetadata": W("proxies get no metadata from it"),
        "ProxyConfig.discoveryAddress": W("proxies connect to the control plane that runs them"),
        "ProxyConfig.drainDuration": W("proxies drain on their own schedule"),
        "ProxyConfig.terminationDrainDuration": W("proxies drain on their own schedule"),
        "ExtensionProvider.name": E,
        "ExtensionProvider.envoyFileAccessLog": E,
        "ExtensionProvider.envoyOtelAls": W("OpenTelemetry access logs are not sent yet"),
        "ExtensionProvider.opentelemetry": E,
        "ExtensionProvider.zipkin": E,
        "ExtensionProvider.prometheus": E,
        "ExtensionProvider.envoyExtAuthzHttp": E,
        "ExtensionProvider.envoyExtAuthzGrpc": E,
        "DefaultProviders.metrics": E,
        "DefaultProviders.tracing": E,
        "DefaultProviders.accessLogging": E,
        "OutboundTrafficPolicy.mode": E,
        "TracingConfig.sampling": E,
        "TracingConfig.zipkin": E,
        "TracingConfig.maxPathTagLength": W("span path tags keep Envoy's default length"),
        "TracingConfig.custom_tags": W("use a Telemetry resource's tracing.customTags"),
        "EnvoyFileAccessLogProvider.path": E,
        "EnvoyFileAccessLogProvider.logFormat": E,
        "OpenTelemetryTracingProvider.service": E,
        "OpenTelemetryTracingProvider.port": E,
        "OpenTelemetryTracingProvider.maxTagLength": _TAG_LENGTH,
        "OpenTelemetryTracingProvider.http": W("spans are exported over gRPC"),
        "OpenTelemetryTracingProvider.resourceDetectors": W("no resource detectors run"),
        "ZipkinTracingProvider.service": E,
        "ZipkinTracingProvider.port": E,
        "ZipkinTracingProvider.maxTagLength": _TAG_LENGTH,
        "ZipkinTracingProvider.enable64bitTraceId": W("trace ids are 128-bit", False),
        "ZipkinTracingProvider.path": E,
        "EnvoyExternalAuthorizationHttpProvider.service": E,
        "EnvoyExternalAuthorizationHttpProvider.port": E,
        "EnvoyExternalAuthorizationHttpProvider.timeout": E,
        "EnvoyExternalAuthorizationHttpProvider.pathPrefix": E,
        "EnvoyExternalAuthorizationHttpProvider.failOpen": E,
        "EnvoyExternalAuthorizationHttpProvider.clearRouteCache": _ROUTE_CACHE,
        "EnvoyExternalAuthorizationHttpProvider.statusOnError": E,
        "EnvoyExternalAuthorizationHttpProvider.includeRequestHeadersInCheck": E,
        "EnvoyExternalAuthorizationHttpProvider.includeHeadersInCheck": E,
        "EnvoyExternalAuthorizationHttpProvider.includeAdditionalHeadersInCheck": E,
        "EnvoyExternalAuthorizationHttpProvider.includeRequestBodyInCheck": E,
        "EnvoyExternalAuthorizationHttpProvider.headersToUpstreamOnAllow": E,
        "EnvoyExternalAuthorizationHttpProvider.headersToDownstreamOnDeny": E,
        "EnvoyExternalAuthorizationHttpProvider.headersToDownstreamOnAllow": E,
        "EnvoyExternalAuthorizationGrpcProvider.service": E,
        "EnvoyExternalAuthorizationGrpcProvider.port": E,
        "EnvoyExternalAuthorizationGrpcProvider.timeout": E,
        "EnvoyExternalAuthorizationGrpcProvider.failOpen": E,
        "EnvoyExternalAuthorizationGrpcProvider.clearRouteCache": _ROUTE_CACHE,
        "EnvoyExternalAuthorizationGrpcProvider.statusOnError": E,
        "EnvoyExternalAuthorizationGrpcProvider.includeRequestBodyInCheck": E,
        "ZipkinAddress.address": E,
        "LogFormat.text": E,
        "LogFormat.labels": E,
        "BufferSettings.maxRequestBytes": E,
        "BufferSettings.allowPartialMessage": E,
        "BufferSettings.packAsBytes": E,
    },
    "Namespace": {
        "NamespaceSpec.finalizers": W("a namespace is deleted at once"),
    },
    "Service": {
        "ServiceSpec.type": W(_SVC_IP, "ClusterIP"),
        "ServiceSpec.selector": E,
        "ServiceSpec.ports": E,
        "ServiceSpec.clusterIP": Decision("enforced", _HEADLESS),
        "ServiceSpec.clusterIPs": W("only clusterIP is read"),
        "ServiceSpec.externalName": W(_SVC_IP),
        "ServiceSpec.externalIPs": W(_SVC_IP),
        "ServiceSpec.sessionAffinity": W("no client IP affinity", "None"),
        "ServiceSpec.sessionAffinityConfig": W("no client IP affinity"),
        "ServiceSpec.loadBalancerIP": W(_SVC_IP),
        "ServiceSpec.loadBalancerSourceRanges": W(_SVC_IP),
        "ServiceSpec.loadBalancerClass": W(_SVC_IP),
        "ServiceSpec.allocateLoadBalancerNodePorts": W(_SVC_IP),
        "ServiceSpec.externalTrafficPolicy": W(_SVC_IP, "Cluster"),
        "ServiceSpec.internalTrafficPolicy": W("every ready endpoint is used", "Cluster"),
        "ServiceSpec.healthCheckNodePort": W(_SVC_IP),
        "ServiceSpec.publishNotReadyAddresses": W("only ready pods are endpoints", False),
        "ServiceSpec.ipFamilies": W("IPv4 only", ["IPv4"]),
        "ServiceSpec.ipFamilyPolicy": W("IPv4 only", "SingleStack"),
        "ServiceSpec.trafficDistribution": W("every ready endpoint is used"),
        "ServicePort.name": E,
        "ServicePort.protocol": W("the local runtime serves TCP ports only", "TCP"),
        "ServicePort.appProtocol": E,
        "ServicePort.port": E,
        "ServicePort.targetPort": E,
        "ServicePort.nodePort": W(_SVC_IP),
    },
    "ServiceAccount": {
        "ServiceAccount.secrets": W("workload identities come from the mesh CA"),
        "ServiceAccount.imagePullSecrets": W(_NO_IMAGES),
        "ServiceAccount.automountServiceAccountToken": W("no token is mounted in pods"),
    },
    "Secret": {
        "Secret.type": W("only the keys are read", *_READ_SECRET_TYPES),
        "Secret.data": E,
        "Secret.stringData": E,
        "Secret.immutable": W("updates are not refused", False),
    },
    "Deployment": {
        "DeploymentSpec.replicas": E,
        "DeploymentSpec.selector": Decision("enforced", "must select the template's labels"),
        "DeploymentSpec.template": E,
        "DeploymentSpec.strategy": E,
        "DeploymentSpec.minReadySeconds": W("a pod is available once it is ready", 0),
        "DeploymentSpec.revisionHistoryLimit": W("no old ReplicaSets are kept"),
        "DeploymentSpec.progressDeadlineSeconds": W("a rollout is never marked failed"),
        "DeploymentSpec.paused": W("rollouts are never paused", False),
        "LabelSelector.matchLabels": E,
        "LabelSelector.matchExpressions": E,
        "LabelSelectorRequirement.key": E,
        "LabelSelectorRequirement.operator": E,
        "LabelSelectorRequirement.values": E,
        "DeploymentStrategy.type": E,
        "DeploymentStrategy.rollingUpdate": E,
        "RollingUpdateDeployment.maxSurge": E,
        "RollingUpdateDeployment.maxUnavailable": E,
        "PodTemplateSpec.metadata": E,
        "PodTemplateSpec.spec": E,
        "TemplateMeta.name": W("pods are named after the Deployment"),
        "TemplateMeta.namespace": W("pods run in the Deployment's namespace"),
        "TemplateMeta.labels": E,
        "TemplateMeta.annotations": E,
        "TemplateMeta.creationTimestamp": W("written by the store"),
        "PodSpec.containers": E,
        "PodSpec.initContainers": W("init containers are not run"),
        "PodSpec.serviceAccountName": E,
        "PodSpec.serviceAccount": W("deprecated: set serviceAccountName"),
        "PodSpec.automountServiceAccountToken": W("no token is mounted in pods"),
        "PodSpec.nodeName": W(_ONE_NODE),
        "PodSpec.nodeSelector": W(_ONE_NODE),
        "PodSpec.hostname": W("a pod's host name is its name"),
        "PodSpec.subdomain": W("a pod's host name is its name"),
        "PodSpec.hostNetwork": W("every pod has its own network namespace", False),
        "PodSpec.hostPID": W(_NO_SHARING, False),
        "PodSpec.hostIPC": W(_NO_SHARING, False),
        "PodSpec.hostAliases": E,
        "PodSpec.volumes": W(_NO_MOUNTS),
        "PodSpec.securityContext": E,
        "PodSpec.restartPolicy": W("a container that exits is restarted", "Always"),
        "PodSpec.terminationGracePeriodSeconds": E,
        "PodSpec.activeDeadlineSeconds": W("pods run until deleted"),
        "PodSpec.dnsPolicy": E,
        "PodSpec.dnsConfig": E,
        "PodSpec.imagePullSecrets": W(_NO_IMAGES),
        "PodSpec.affinity": W(_ONE_NODE),
        "PodSpec.tolerations": W(_ONE_NODE),
        "PodSpec.topologySpreadConstraints": W(_ONE_NODE),
        "PodSpec.priorityClassName": W(_ONE_NODE),
        "PodSpec.priority": W(_ONE_NODE),
        "PodSpec.schedulerName": W(_ONE_NODE, "default-scheduler"),
        "PodSpec.runtimeClassName": W("containers are processes"),
        "PodSpec.enableServiceLinks": W("no service environment variables are set", False),
        "PodSpec.shareProcessNamespace": W(_NO_SHARING, False),
        "PodSpec.preemptionPolicy": W(_ONE_NODE),
        "PodSpec.readinessGates": W("a pod is ready when its containers are"),
        "PodSpec.setHostnameAsFQDN": W("a pod's host name is its name", False),
        "PodSpec.overhead": W(_NO_LIMITS),
        "PodSpec.os": W("containers are Linux processes"),
        "PodSpec.hostUsers": W("containers run as the users of the host"),
        "Container.name": E,
        "Container.image": _IMAGE,
        "Container.imagePullPolicy": _IMAGE,
        "Container.command": E,
        "Container.args": E,
        "Container.workingDir": W("containers run in the runtime's working directory"),
        "Container.ports": E,
        "Container.env": E,
        "Container.envFrom": W("no variables are set from it"),
        "Container.resources": W(_NO_LIMITS),
        "Container.volumeMounts": W(_NO_MOUNTS),
        "Container.volumeDevices": W(_NO_MOUNTS),
        "Container.readinessProbe": E,
        "Container.livenessProbe": W("no container is restarted by a probe"),
        "Container.startupProbe": W("no container is restarted by a probe"),
        "Container.lifecycle": W("hooks are not run"),
        "Container.securityContext": E,
        "Container.terminationMessagePath": W(_NO_MESSAGE),
        "Container.terminationMessagePolicy": W(_NO_MESSAGE, "File"),
        "Container.restartPolicy": W("init containers are not run"),
        "Container.stdin": W(_NO_TTY, False),
        "Container.stdinOnce": W(_NO_TTY, False),
        "Container.tty": W(_NO_TTY, False),
        "ContainerPort.name": E,
        "ContainerPort.containerPort": E,
        "ContainerPort.protocol": W(
            "the local runtime serves TCP ports only (others do not count for readiness)", "TCP"
        ),
        "ContainerPort.hostPort": W("pods are reached at their own address"),
        "ContainerPort.hostIP": W("pods are reached at their own address"),
        "EnvVar.name": E,
        "EnvVar.value": E,
        "EnvVar.valueFrom": E,
        "EnvVarSource.fieldRef": Decision("enforced", _FIELD_REFS),
        "EnvVarSource.resourceFieldRef": W(_EMPTY_VALUE),
        "EnvVarSource.secretKeyRef": W(_EMPTY_VALUE),
        "EnvVarSource.configMapKeyRef": W(_EMPTY_VALUE),
        "ObjectFieldSelector.fieldPath": E,
        "ObjectFieldSelector.apiVersion": E,
        "Probe.httpGet": E,
        "Probe.tcpSocket": E,
        "Probe.exec": W(_PORTS_READY),
        "Probe.grpc": W(_PORTS_READY),
        "Probe.initialDelaySeconds": W(_OWN_SCHEDULE),
        "Probe.periodSeconds": W(_OWN_SCHEDULE),
        "Probe.timeoutSeconds": W(_OWN_SCHEDULE),
        "Probe.successThreshold": W(_OWN_SCHEDULE),
        "Probe.failureThreshold": W(_OWN_SCHEDULE),
        "Probe.terminationGracePeriodSeconds": W("no container is restarted by a probe"),
        "HTTPGetAction.path": E,
        "HTTPGetAction.port": E,
        "HTTPGetAction.host": W("the pod's own address is probed"),
        "HTTPGetAction.scheme": W("probes use plain HTTP", "HTTP"),
        "HTTPGetAction.httpHeaders": W("probes send no extra headers"),
        "TCPSocketAction.port": E,
        "TCPSocketAction.host": W("the pod's own address is probed"),
        "PodSecurityContext.runAsUser": E,
        "PodSecurityContext.runAsGroup": E,
        "PodSecurityContext.runAsNonRoot": W(_NOT_CHECKED, True),
        "PodSecurityContext.fsGroup": W(_NO_MOUNTS),
        "PodSecurityContext.fsGroupChangePolicy": W(_NO_MOUNTS),
        "PodSecurityContext.supplementalGroups": W(_NO_SANDBOX),
        "PodSecurityContext.supplementalGroupsPolicy": W(_NO_SANDBOX),
        "PodSecurityContext.sysctls": W(_NO_SANDBOX),
        "PodSecurityContext.seccompProfile": W(_NO_SANDBOX),
        "PodSecurityContext.seLinuxOptions": W(_NO_SANDBOX),
        "PodSecurityContext.appArmorProfile": W(_NO_SANDBOX),
        "PodSecurityContext.windowsOptions": W(_NO_SANDBOX),
        "PodSecurityContext.seLinuxChangePolicy": W(_NO_SANDBOX),
        "HostAlias.ip": E,
        "HostAlias.hostnames": E,
        "SecurityContext.runAsUser": E,
        "SecurityContext.runAsGroup": E,
        "SecurityContext.runAsNonRoot": W(_NOT_CHECKED, True),
        "SecurityContext.privileged": W(_NO_SANDBOX, False),
        "SecurityContext.allowPrivilegeEscalation": W(_NO_SANDBOX),
        "SecurityContext.readOnlyRootFilesystem": W(_NO_SANDBOX, False),
        "SecurityContext.capabilities": W(_NO_SANDBOX),
        "SecurityContext.procMount": W(_NO_SANDBOX, "Default"),
        "SecurityContext.seccompProfile": W(_NO_SANDBOX),
        "SecurityContext.seLinuxOptions": W(_NO_SANDBOX),
        "SecurityContext.appArmorProfile": W(_NO_SANDBOX),
        "SecurityContext.windowsOptions": W(_NO_SANDBOX),
    },
    "Canary": {
        "CanarySpec.provider": Decision("enforced", "istio only; others are refused"),
        "CanarySpec.metricsServer": E,
        "CanarySpec.targetRef": Decision("enforced", "a Deployment only; others are refused"),
        "CanarySpec.autoscalerRef": W("there is no autoscaler: the primary keeps the replicas"),
        "CanarySpec.ingressRef": R(_VS_ONLY),
        "CanarySpec.routeRef": R(_VS_ONLY),
        "CanarySpec.upstreamRef": R(_VS_ONLY),
        "CanarySpec.service": E,
        "CanarySpec.analysis": E,
        "CanarySpec.canaryAnalysis": E,
        "CanarySpec.progressDeadlineSeconds": E,
        "CanarySpec.skipAnalysis": E,
        "CanarySpec.revertOnDeletion": R(_REVERT),
        "CanarySpec.suspend": E,
        "CrossNamespaceObjectReference.apiVersion": E,
        "CrossNamespaceObjectReference.kind": E,
        "CrossNamespaceObjectReference.name": E,
        "CrossNamespaceObjectReference.namespace": E,
        "CanaryService.name": E,
        "CanaryService.port": E,
        "CanaryService.portName": E,
        "CanaryService.targetPort": E,
        "CanaryService.appProtocol": E,
        "CanaryService.portDiscovery": R("true is not run yet: name the one port with port"),
        "CanaryService.timeout": E,
        "CanaryService.hosts": E,
        "CanaryService.gateways": E,
        "CanaryService.gatewayRefs": R(_VS_ONLY),
        "CanaryService.delegation": R("true is not run yet"),
        "CanaryService.trafficPolicy": S("DestinationRule"),
        "CanaryService.match": S("VirtualService"),
        "CanaryService.rewrite": S("VirtualService"),
        "CanaryService.retries": S("VirtualService"),
        "CanaryService.headers": S("VirtualService"),
        "CanaryService.mirror": R(_VS_ONLY),
        "CanaryService.corsPolicy": S("VirtualService"),
        "CanaryService.apex": E,
        "CanaryService.primary": E,
        "CanaryService.canary": E,
        "CanaryService.backends": R(_VS_ONLY),
        "CanaryService.meshName": R("not run yet"),
        "CanaryService.sessionAffinity": R("not run yet"),
        "CustomMetadata.labels": E,
        "CustomMetadata.annotations": E,
        "CanaryAnalysis.interval": E,
        "CanaryAnalysis.iterations": E,
        "CanaryAnalysis.mirror": E,
        "CanaryAnalysis.mirrorWeight": R("not run yet: mirroring copies every request"),
        "CanaryAnalysis.maxWeight": E,
        "CanaryAnalysis.stepWeight": E,
        "CanaryAnalysis.stepWeights": E,
        "CanaryAnalysis.stepWeightPromotion": R("not run yet: promotion is in one step"),
        "CanaryAnalysis.threshold": E,
        "CanaryAnalysis.primaryReadyThreshold": W(_ALL_READY),
        "CanaryAnalysis.canaryReadyThreshold": W(_ALL_READY),
        "CanaryAnalysis.alerts": R("not run: there are no alert providers; see the events"),
        "CanaryAnalysis.metrics": E,
        "CanaryAnalysis.webhooks": E,
        "CanaryAnalysis.match": S("VirtualService"),
        "CanaryAnalysis.sessionAffinity": R("not run yet"),
        "CanaryMetric.name": E,
        "CanaryMetric.interval": E,
        "CanaryMetric.threshold": E,
        "CanaryMetric.thresholdRange": E,
        "CanaryMetric.query": E,
        "CanaryMetric.templateRef": E,
        "CanaryMetric.templateVariables": E,
        "ThresholdRange.min": E,
        "ThresholdRange.max": E,
        "MetricTemplateRef.name": E,
        "MetricTemplateRef.namespace": E,
        "CanaryWebhook.name": E,
        "CanaryWebhook.type": Decision("enforced", "rollback is refused"),
        "CanaryWebhook.url": E,
        "CanaryWebhook.muteAlert": W("there are no alerts", False),
        "CanaryWebhook.timeout": E,
        "CanaryWebhook.retries": E,
        "CanaryWebhook.metadata": E,
    },
    "MetricTemplate": {
        "MetricTemplateSpec.provider": E,
        "MetricTemplateSpec.query": E,
        "MetricTemplateProvider.type": Decision("enforced", "prometheus only; others are refused"),
        "MetricTemplateProvider.address": E,
        "MetricTemplateProvider.secretRef": R("not run yet"),
        "MetricTemplateProvider.insecureSkipVerify": W("certificates are verified", False),
        "MetricTemplateProvider.region": R("not run yet"),
        "MetricTemplateProvider.headers": R("not run yet"),
    },
}

#: ``metadata``, the same for every kind.
METADATA: dict[str, Decision] = {
    "ObjectMeta.name": E,
    "ObjectMeta.namespace": E,
    "ObjectMeta.labels": E,
    "ObjectMeta.annotations": Decision("enforced", "the ones Istio reads; others are kept"),
    "ObjectMeta.resourceVersion": Decision("enforced", _STORE_REVISION),
    "ObjectMeta.uid": Decision("enforced", _STORE_WRITES),
    "ObjectMeta.creationTimestamp": Decision("enforced", _STORE_WRITES),
    "ObjectMeta.generation": Decision("enforced", _STORE_WRITES),
    "ObjectMeta.deletionTimestamp": W("deletes are immediate"),
    "ObjectMeta.finalizers": W("deletes are immediate"),
    "ObjectMeta.ownerReferences": Decision("enforced", _OWNERS),
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


#: Top-level fields that are not a kind's own: identity, metadata (:data:`METADATA`) and the
#: status controllers write.
NOT_OWN = ("apiVersion", "kind", "metadata", "status")


def _key(model: type[BaseModel], name: str) -> tuple[str, str]:
    field = model.model_fields[name].alias or name
    return field, f"{model.__name__}.{field}"


def _roots(kind: str) -> list[tuple[str, type[BaseModel], str]]:
    """``(path prefix, model, field)`` of the top-level fields walked: those of ``spec`` (no
    entry for ``spec`` itself) and the kind's other own fields (a Secret's ``data``)."""
    top = MODELS[kind]
    out: list[tuple[str, type[BaseModel], str]] = []
    for name, info in top.model_fields.items():
        field = info.alias or name
        if field in NOT_OWN:
            continue
        if field == "spec":
            out += [("spec", m, n) for m in _models_in(info.annotation) for n in m.model_fields]
        else:
            out.append(("", top, name))
    return out


def _walk(
    roots: list[tuple[str, type[BaseModel], str]], table: dict[str, Decision]
) -> list[tuple[str, str, Decision | None]]:
    out: list[tuple[str, str, Decision | None]] = []
    seen: set[str] = set()
    queue: list[tuple[str, type[BaseModel]]] = []
    visited: set[type[BaseModel]] = set()

    def visit(prefix: str, model: type[BaseModel], name: str) -> None:
        info = model.model_fields[name]
        field, key = _key(model, name)
        path = f"{prefix}.{field}" if prefix else field
        decision = table.get(key)
        if key not in seen:
            seen.add(key)
            out.append((key, path, decision))
        if decision is None or (decision.status == "enforced" and not decision.see):
            suffix = _container_suffix(info.annotation)
            queue.extend((path + suffix, m) for m in _models_in(info.annotation))

    for prefix, model, name in roots:
        visited.add(model)
        visit(prefix, model, name)
    while queue:
        prefix, model = queue.pop(0)
        if model in visited:
            continue
        visited.add(model)
        for name in model.model_fields:
            visit(prefix, model, name)
    return out


def walk(kind: str) -> list[tuple[str, str, Decision | None]]:
    """``(Model.field, first path, decision)`` for every field of ``kind`` that is reached,
    breadth first; the subtree of a refused or warned field (or one with ``see``) is not
    entered."""
    return _walk(_roots(kind), FIELDS.get(kind, {}))


def walk_metadata() -> list[tuple[str, str, Decision | None]]:
    """The same for ``metadata``, one table for every kind."""
    return _walk([("metadata", ObjectMeta, n) for n in ObjectMeta.model_fields], METADATA)


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, list | dict | tuple) and not value)


def _set_fields(prefix: str, obj: BaseModel) -> Iterator[tuple[str, BaseModel, str, Any]]:
    for name in type(obj).model_fields:
        if name not in obj.model_fields_set:
            continue
        value = getattr(obj, name)
        if not _is_unset(value):
            field = type(obj).model_fields[name].alias or name
            yield (f"{prefix}.{field}" if prefix else field), obj, name, value


def _children(path: str, value: Any) -> Iterator[tuple[str, BaseModel]]:
    if isinstance(value, BaseModel):
        yield path, value
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _children(f"{path}[{i}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _children(f"{path}[{k}]", v)


def unapplied(kind: str, obj: BaseModel, skip: frozenset[str] = frozenset()) -> list[FieldError]:
    """A warning for every warned field of ``metadata`` and, for :data:`TABLE_WARNED_KINDS`,
    of ``kind`` that ``obj`` (its typed model) sets to a value that is not ``quiet``; the
    fields of one object with one note share a warning
    (``spec.template.spec.containers[0]: image, imagePullPolicy: ...``). Fields at a path in
    ``skip`` (already warned about by the kind's validator) are left out. Pure."""
    found: dict[tuple[str, str], list[str]] = {}
    nodes: list[tuple[str, BaseModel, dict[str, Decision]]] = []

    def consider(
        path: str, owner: BaseModel, name: str, value: Any, table: dict[str, Decision]
    ) -> None:
        decision = table.get(_key(type(owner), name)[1])
        if decision is None:
            return
        if decision.quiet_with and getattr(owner, decision.quiet_with, None):
            return
        if decision.status == "warned" and value not in decision.quiet and path not in skip:
            parent, _, leaf = path.rpartition(".")
            found.setdefault((parent, decision.note), []).append(leaf)
        elif decision.status == "enforced" and not decision.see:
            nodes.extend((p, child, table) for p, child in _children(path, value))

    own = FIELDS.get(kind, {}) if kind in TABLE_WARNED_KINDS else {}
    for path, owner, name, value in _set_fields("", obj):
        if path == "metadata" and isinstance(value, ObjectMeta):
            nodes.append(("metadata", value, METADATA))
        elif path == "spec" and isinstance(value, BaseModel):
            nodes.append(("spec", value, own))
        elif path not in NOT_OWN:
            consider(path, owner, name, value, own)
    while nodes:
        prefix, node, table = nodes.pop(0)
        for path, owner, name, value in _set_fields(prefix, node):
            consider(path, owner, name, value, table)
    return [
        FieldError(parent, f"{', '.join(fields)}: {NOT_APPLIED_BY_TABLE}: {note}")
        for (parent, note), fields in found.items()
    ]


#: How a warning of :func:`unapplied` reads (after the fields' names).
NOT_APPLIED_BY_TABLE = "accepted but not applied by Pilotfish"


def _count(rows: list[tuple[str, str, Decision | None]]) -> dict[Status, int]:
    c: dict[Status, int] = {"enforced": 0, "refused": 0, "warned": 0}
    for _, _, d in rows:
        if d is not None:
            c[d.status] += 1
    return c


def counts() -> dict[str, dict[Status, int]]:
    """Per kind, how many fields are enforced, refused and warned."""
    return {kind: _count(walk(kind)) for kind in COVERED_KINDS}


DOCS_BEGIN = "<!-- field-support:begin -->\n"
DOCS_END = "<!-- field-support:end -->"


def _json(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    return str(value)


def _note(d: Decision) -> str:
    if not d.quiet:
        return d.note
    return f"{d.note} (not warned: {', '.join(_json(v) for v in d.quiet)})"


def _section(title: str, rows: list[tuple[str, str, Decision | None]]) -> list[str]:
    c = _count(rows)
    lines = [
        f"### {title}",
        "",
        f"{c['enforced']} enforced, {c['refused']} refused, {c['warned']} warned.",
        "",
        "| field | at apply | note |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{path}` | {d.status} | {_note(d)} |" for _, path, d in rows if d is not None]
    return [*lines, ""]


def markdown() -> str:
    """The "Field support" tables of docs/configuration.md."""
    lines: list[str] = []
    for kind in COVERED_KINDS:
        lines += _section(kind, walk(kind))
    lines += _section("metadata (every kind)", walk_metadata())
    lines += [
        "### Written by the runtime",
        "",
        ", ".join(RUNTIME_KINDS) + ": the local runtime writes them; `apply` refuses them "
        "(a Pod's spec is its Deployment's `spec.template.spec`, above).",
        "",
    ]
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
