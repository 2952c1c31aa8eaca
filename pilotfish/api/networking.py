"""Gateway, ServiceEntry, WorkloadEntry, WorkloadGroup, Sidecar, EnvoyFilter (networking.istio.io).

VirtualService and DestinationRule live in their own modules; this one holds the rest of the
networking group with Istio's JSON field names.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.destinationrule import ConnectionPoolSettings
from pilotfish.api.meta import (
    Model,
    NetworkingWorkloadSelector,
    PolicyTargetReference,
    Resource,
)
from pilotfish.api.virtualservice import Destination

# --- Gateway ---------------------------------------------------------------------------------


class Port(Model):
    """A server or service port: ``number``, ``protocol`` (HTTP, HTTPS, GRPC, HTTP2, MONGO,
    TCP, TLS...), ``name`` and optional ``targetPort``."""

    number: int = 0
    protocol: str = ""
    name: str = ""
    targetPort: int | None = None


TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]
ServerTLSMode = Literal[
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
]


class TLSCertificate(Model):
    serverCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None


class ServerTLSSettings(Model):
    httpsRedirect: bool | None = None
    mode: ServerTLSMode | None = None
    serverCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None
    caCrl: str | None = None
    credentialName: str | None = None
    credentialNames: list[str] = Field(default_factory=list)
    tlsCertificates: list[TLSCertificate] = Field(default_factory=list)
    subjectAltNames: list[str] = Field(default_factory=list)
    verifyCertificateSpki: list[str] = Field(default_factory=list)
    verifyCertificateHash: list[str] = Field(default_factory=list)
    minProtocolVersion: TLSVersion | None = None
    maxProtocolVersion: TLSVersion | None = None
    cipherSuites: list[str] = Field(default_factory=list)


class Server(Model):
    port: Port
    bind: str | None = None
    hosts: list[str] = Field(default_factory=list)
    tls: ServerTLSSettings | None = None
    defaultEndpoint: str | None = None
    name: str | None = None


class GatewaySpec(Model):
    servers: list[Server] = Field(default_factory=list)
    selector: dict[str, str] = Field(default_factory=dict)


class Gateway(Resource):
    spec: GatewaySpec = Field(default_factory=GatewaySpec)
    status: dict[str, Any] | None = None


# --- WorkloadEntry and ServiceEntry ----------------------------------------------------------


class WorkloadEntrySpec(Model):
    address: str | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    serviceAccount: str | None = None


class WorkloadEntry(Resource):
    spec: WorkloadEntrySpec = Field(default_factory=WorkloadEntrySpec)
    status: dict[str, Any] | None = None


class WorkloadGroupObjectMeta(Model):
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class WorkloadGroupSpec(Model):
    """A template for the WorkloadEntries that agents register when they connect."""

    metadata: WorkloadGroupObjectMeta | None = None
    template: WorkloadEntrySpec | None = None
    probe: dict[str, Any] | None = None


class WorkloadGroup(Resource):
    spec: WorkloadGroupSpec = Field(default_factory=WorkloadGroupSpec)
    status: dict[str, Any] | None = None


class ServicePort(Model):
    number: int = 0
    protocol: str | None = None
    name: str = ""
    targetPort: int | None = None


class ServiceEntrySpec(Model):
    hosts: list[str] = Field(default_factory=list)
    addresses: list[str] = Field(default_factory=list)
    ports: list[ServicePort] = Field(default_factory=list)
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"] | None = None
    endpoints: list[WorkloadEntrySpec] = Field(default_factory=list)
    workloadSelector: NetworkingWorkloadSelector | None = None
    exportTo: list[str] = Field(default_factory=list)
    subjectAltNames: list[str] = Field(default_factory=list)


class ServiceEntry(Resource):
    spec: ServiceEntrySpec = Field(default_factory=ServiceEntrySpec)
    status: dict[str, Any] | None = None


# --- Sidecar ---------------------------------------------------------------------------------

CaptureMode = Literal["DEFAULT", "IPTABLES", "NONE"]


class SidecarPort(Model):
    number: int = 0
    protocol: str | None = None
    name: str | None = None
    targetPort: int | None = None


class IstioIngressListener(Model):
    port: SidecarPort
    bind: str | None = None
    captureMode: CaptureMode | None = None
    defaultEndpoint: str | None = None
    tls: ServerTLSSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None


class IstioEgressListener(Model):
    port: SidecarPort | None = None
    bind: str | None = None
    captureMode: CaptureMode | None = None
    hosts: list[str] = Field(default_factory=list)


class OutboundTrafficPolicy(Model):
    mode: Literal["REGISTRY_ONLY", "ALLOW_ANY"] | None = None
    egressProxy: Destination | None = None


class SidecarSpec(Model):
    workloadSelector: NetworkingWorkloadSelector | None = None
    ingress: list[IstioIngressListener] = Field(default_factory=list)
    egress: list[IstioEgressListener] = Field(default_factory=list)
    inboundConnectionPool: ConnectionPoolSettings | None = None
    outboundTrafficPolicy: OutboundTrafficPolicy | None = None


class Sidecar(Resource):
    spec: SidecarSpec = Field(default_factory=SidecarSpec)
    status: dict[str, Any] | None = None


# --- EnvoyFilter -----------------------------------------------------------------------------

ApplyTo = Literal[
    "INVALID",
    "LISTENER",
    "FILTER_CHAIN",
    "NETWORK_FILTER",
    "HTTP_FILTER",
    "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST",
    "HTTP_ROUTE",
    "CLUSTER",
    "EXTENSION_CONFIG",
    "BOOTSTRAP",
    "LISTENER_FILTER",
]
PatchContext = Literal["ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"]
PatchOperation = Literal[
    "INVALID",
    "MERGE",
    "ADD",
    "REMOVE",
    "INSERT_BEFORE",
    "INSERT_AFTER",
    "INSERT_FIRST",
    "REPLACE",
    "MERGE_AND_REPLACE_LIST",
]


class ProxyMatch(Model):
    proxyVersion: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class SubFilterMatch(Model):
    name: str | None = None


class FilterMatch(Model):
    name: str | None = None
    subFilter: SubFilterMatch | None = None


class FilterChainMatch(Model):
    name: str | None = None
    sni: str | None = None
    transportProtocol: str | None = None
    applicationProtocols: str | None = None
    filter: FilterMatch | None = None
    destinationPort: int | None = None


class ListenerMatch(Model):
    portNumber: int | None = None
    portName: str | None = None
    filterChain: FilterChainMatch | None = None
    listenerFilter: str | None = None
    name: str | None = None


class RouteMatch(Model):
    name: str | None = None
    action: Literal["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"] | None = None


class VirtualHostMatch(Model):
    name: str | None = None
    domainName: str | None = None
    route: RouteMatch | None = None


class RouteConfigurationMatch(Model):
    portNumber: int | None = None
    portName: str | None = None
    gateway: str | None = None
    vhost: VirtualHostMatch | None = None
    name: str | None = None


class ClusterMatch(Model):
    portNumber: int | None = None
    service: str | None = None
    subset: str | None = None
    name: str | None = None


class EnvoyConfigObjectMatch(Model):
    context: PatchContext | None = None
    proxy: ProxyMatch | None = None
    listener: ListenerMatch | None = None
    routeConfiguration: RouteConfigurationMatch | None = None
    cluster: ClusterMatch | None = None


class Patch(Model):
    operation: PatchOperation | None = None
    #: Free-form Envoy configuration (any JSON), merged or inserted as written.
    value: Any = None
    filterClass: Literal["UNSPECIFIED", "AUTHN", "AUTHZ", "STATS"] | None = None


class EnvoyConfigObjectPatch(Model):
    applyTo: ApplyTo | None = None
    match: EnvoyConfigObjectMatch | None = None
    patch: Patch | None = None


class EnvoyFilterSpec(Model):
    workloadSelector: NetworkingWorkloadSelector | None = None
    targetRefs: list[PolicyTargetReference] = Field(default_factory=list)
    configPatches: list[EnvoyConfigObjectPatch] = Field(default_factory=list)
    priority: int | None = None


class EnvoyFilter(Resource):
    spec: EnvoyFilterSpec = Field(default_factory=EnvoyFilterSpec)
    status: dict[str, Any] | None = None


# --- WorkloadGroup auto-registration (Istio's rules) ----------------------------------------

#: Annotation on an auto-registered WorkloadEntry naming its group (Istio's).
AUTO_REGISTRATION_GROUP_ANNOTATION = "istio.io/autoRegistrationGroup"
#: Annotation naming the control plane that manages an auto-registered entry (Istio's).
WORKLOAD_CONTROLLER_ANNOTATION = "istio.io/workloadController"


def auto_registered_name(group: str, ip: str, network: str = "") -> str:
    """Istio's name of the WorkloadEntry a workload of ``group`` at ``ip`` registers:
    ``<group>-<ip>`` (``:`` of IPv6 as ``-``), then ``-<network>`` when on a network."""
    name = f"{group}-{ip.replace(':', '-')}"
    return f"{name}-{network}" if network else name


def auto_registered_entry(
    group: dict[str, Any], ip: str, labels: dict[str, str], controller: str
) -> dict[str, Any]:
    """The WorkloadEntry body an agent at ``ip`` registers from a stored ``group`` body:
    the template, the group's metadata, then the agent's own labels (Istio merges them in this
    order), owned by the group."""
    meta = group.get("metadata") or {}
    spec = group.get("spec") or {}
    template = dict(spec.get("template") or {})
    wg_meta = spec.get("metadata") or {}
    network = str(template.get("network") or "")
    merged = {**(template.get("labels") or {}), **(wg_meta.get("labels") or {}), **labels}
    template["address"] = ip
    template["labels"] = merged
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {
            "name": auto_registered_name(str(meta.get("name")), ip, network),
            "namespace": meta.get("namespace") or "default",
            "labels": merged,
            "annotations": {
                **(wg_meta.get("annotations") or {}),
                AUTO_REGISTRATION_GROUP_ANNOTATION: str(meta.get("name")),
                WORKLOAD_CONTROLLER_ANNOTATION: controller,
            },
            "ownerReferences": [
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "WorkloadGroup",
                    "name": meta.get("name"),
                    "uid": meta.get("uid") or "",
                    "controller": True,
                }
            ],
        },
        "spec": template,
    }
