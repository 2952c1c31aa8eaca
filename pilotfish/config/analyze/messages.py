"""Analysis messages: Istio's codes, levels and texts, and the message values analyzers return.

Each :class:`MessageType` mirrors one entry of Istio's analyzer message catalogue (same code,
name, level and wording; ``%s``-style placeholders become ``{}``), so ``istioctl analyze``
users recognise every line. A :class:`Message` is one finding about one resource: its type,
the resource (``VirtualService default/reviews``), the rendered text, the field path it is
about (``spec.http[0].route[0].destination``) and, for resources read from files, where the
resource came from.

Only the message texts that name a command are adapted: ``kubectl label namespace`` becomes
``pilotfish label namespace``, the command that does the same here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from pilotfish.api.objects import ResourceKey
from pilotfish.errors import Source

__all__ = [
    "CATALOGUE",
    "Level",
    "Message",
    "MessageType",
    "ResourceKey",
    "documentation_url",
]


class Level(IntEnum):
    """Istio's analyzer levels; higher is worse."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    @property
    def label(self) -> str:
        """``Info``, ``Warning`` or ``Error``, as istioctl prints them."""
        return self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Level:
        """``info``/``warning``/``warn``/``error`` in any case."""
        key = text.strip().upper()
        if key == "WARN":
            key = "WARNING"
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f'unknown level "{text}": use Info, Warning or Error') from None


@dataclass(frozen=True, slots=True)
class MessageType:
    """One code of the catalogue: ``IST0101 ReferencedResourceNotFound``."""

    code: str
    name: str
    level: Level
    template: str
    description: str

    def render(self, *args: object) -> str:
        return self.template.format(*args)


def documentation_url(code: str) -> str:
    """Istio's page for ``code`` (the codes and their meaning are Istio's)."""
    return f"https://istio.io/latest/docs/reference/config/analysis/{code.lower()}/"


@dataclass(frozen=True, slots=True)
class Message:
    """One finding: what (type, text), about which resource, where (field path, origin)."""

    type: MessageType
    resource: ResourceKey
    text: str
    #: Field path inside the resource (``spec.gateways[0]``); empty for the whole resource.
    path: str = ""
    #: The file, document and first line the resource was read from; None for live config.
    origin: Source | None = field(default=None, compare=False)

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> Level:
        return self.type.level

    def sort_key(self) -> tuple[int, str, str, str, str, str, str]:
        r = self.resource
        return (-self.level, r.kind, r.namespace, r.name, self.code, self.path, self.text)


def _t(code: str, name: str, level: Level, template: str, description: str) -> MessageType:
    return MessageType(code, name, level, template, description)


INFO, WARNING, ERROR = Level.INFO, Level.WARNING, Level.ERROR

INTERNAL_ERROR = _t(
    "IST0001",
    "InternalError",
    ERROR,
    "Internal error: {}",
    "There was an internal error in the toolchain. This is almost always a bug in the "
    "implementation.",
)
DEPRECATED = _t(
    "IST0002",
    "Deprecated",
    WARNING,
    "Deprecated: {}",
    "A feature that the configuration is depending on is now deprecated.",
)
REFERENCED_RESOURCE_NOT_FOUND = _t(
    "IST0101",
    "ReferencedResourceNotFound",
    ERROR,
    'Referenced {} not found: "{}"',
    "A resource being referenced does not exist.",
)
NAMESPACE_NOT_INJECTED = _t(
    "IST0102",
    "NamespaceNotInjected",
    INFO,
    "The namespace is not enabled for Istio injection. Run 'pilotfish label namespace {} "
    "istio-injection=enabled' to enable it, or 'pilotfish label namespace {} "
    "istio-injection=disabled' to explicitly mark it as not needing injection.",
    "A namespace is not enabled for Istio injection.",
)
SCHEMA_VALIDATION_ERROR = _t(
    "IST0106",
    "SchemaValidationError",
    ERROR,
    "Schema validation error: {}",
    "The resource has a schema validation error.",
)
CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS = _t(
    "IST0109",
    "ConflictingMeshGatewayVirtualServiceHosts",
    ERROR,
    "The VirtualServices {} associated with mesh gateway define the same host {} which can "
    "lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices "
    "into a single resource.",
    "Conflicting hosts on VirtualServices associated with mesh gateway",
)
CONFLICTING_SIDECAR_WORKLOAD_SELECTORS = _t(
    "IST0110",
    "ConflictingSidecarWorkloadSelectors",
    ERROR,
    'The Sidecars {} in namespace "{}" select the same workload pod "{}", which can lead to '
    "undefined behavior.",
    "A Sidecar resource selects the same workloads as another Sidecar resource",
)
MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS = _t(
    "IST0111",
    "MultipleSidecarsWithoutWorkloadSelectors",
    ERROR,
    'The Sidecars {} in namespace "{}" have no workload selector, which can lead to '
    "undefined behavior.",
    "More than one sidecar resource in a namespace has no workload selector",
)
VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED = _t(
    "IST0112",
    "VirtualServiceDestinationPortSelectorRequired",
    ERROR,
    'This VirtualService routes to a service "{}" that exposes multiple ports {}. Specifying '
    "a port in the destination is required to disambiguate.",
    "A VirtualService routes to a service with more than one port exposed, but does not "
    "specify which to use.",
)
MTLS_POLICY_CONFLICT = _t(
    "IST0113",
    "MTLSPolicyConflict",
    ERROR,
    "A DestinationRule and Policy are in conflict with regards to mTLS for host {}. The "
    'DestinationRule "{}" specifies that mTLS must be {} but the Policy object "{}" '
    "specifies {}.",
    "A DestinationRule and Policy are in conflict with regards to mTLS.",
)
PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION = _t(
    "IST0118",
    "PortNameIsNotUnderNamingConvention",
    INFO,
    "Port name {} (port: {}, targetPort: {}) doesn't follow the naming convention of Istio port.",
    "Port name is not under naming convention. Protocol detection is applied to the port.",
)
JWT_FAILURE_DUE_TO_INVALID_SERVICE_PORT_PREFIX = _t(
    "IST0119",
    "JwtFailureDueToInvalidServicePortPrefix",
    WARNING,
    "Authentication policy with JWT targets Service with invalid port specification (port: {}, "
    "name: {}, protocol: {}, targetPort: {}).",
    "Authentication policy with JWT targets Service with invalid port specification.",
)
INVALID_REGEXP = _t(
    "IST0122",
    "InvalidRegexp",
    WARNING,
    "Field {} regular expression invalid: {} ({})",
    "Invalid Regex",
)
NO_MATCHING_WORKLOADS_FOUND = _t(
    "IST0127",
    "NoMatchingWorkloadsFound",
    WARNING,
    "No matching workloads for this resource with the following labels: {}",
    "There aren't workloads matching the resource labels",
)
NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL = _t(
    "IST0128",
    "NoServerCertificateVerificationDestinationLevel",
    WARNING,
    "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are set "
    "to validate server identity for host: {}",
    "No caCertificates are set in DestinationRule, this results in no verification of "
    "presented server certificate.",
)
NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL = _t(
    "IST0129",
    "NoServerCertificateVerificationPortLevel",
    WARNING,
    "DestinationRule {} in namespace {} has TLS mode set to {} but no caCertificates are set "
    "to validate server identity for host: {} at port {}",
    "No caCertificates are set in DestinationRule, this results in no verification of "
    "presented server certificate for traffic to a given port.",
)
VIRTUAL_SERVICE_UNREACHABLE_RULE = _t(
    "IST0130",
    "VirtualServiceUnreachableRule",
    WARNING,
    "VirtualService rule {} not used ({}).",
    "A VirtualService rule will never be used because a previous rule uses the same match.",
)
VIRTUAL_SERVICE_INEFFECTIVE_MATCH = _t(
    "IST0131",
    "VirtualServiceIneffectiveMatch",
    INFO,
    "VirtualService rule {} match {} is not used (duplicate/overlapping match in rule {}).",
    "A VirtualService rule match duplicates a match in a previous rule.",
)
VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY = _t(
    "IST0132",
    "VirtualServiceHostNotFoundInGateway",
    WARNING,
    "one or more host {} defined in VirtualService {} not found in Gateway {}.",
    "Host defined in VirtualService not found in Gateway.",
)
SCHEMA_WARNING = _t(
    "IST0133",
    "SchemaWarning",
    WARNING,
    "Schema validation warning: {}",
    "The resource has a schema validation warning.",
)
CONFLICTING_GATEWAYS = _t(
    "IST0145",
    "ConflictingGateways",
    ERROR,
    "Conflict with gateways {} (workload selector {}, port {}, hosts {}).",
    "Gateway should not have the same selector, port and matched hosts of server",
)
INVALID_TELEMETRY_PROVIDER = _t(
    "IST0157",
    "InvalidTelemetryProvider",
    WARNING,
    'The Telemetry {} in namespace "{}" with empty providers will be ignored.',
    "The Telemetry with empty providers will be ignored",
)
CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS = _t(
    "IST0159",
    "ConflictingTelemetryWorkloadSelectors",
    ERROR,
    'The Telemetries {} in namespace "{}" select the same workload pod "{}", which can lead '
    "to undefined behavior.",
    "A Telemetry resource selects the same workloads as another Telemetry resource",
)
MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS = _t(
    "IST0160",
    "MultipleTelemetriesWithoutWorkloadSelectors",
    ERROR,
    'The Telemetries {} in namespace "{}" have no workload selector, which can lead to '
    "undefined behavior.",
    "More than one telemetry resource in a namespace has no workload selector",
)
GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = _t(
    "IST0162",
    "GatewayPortNotDefinedOnService",
    WARNING,
    "The gateway is listening on a target port (port {}) that is not defined in the Service "
    "associated with its workload instances (Pod selector {}). If you need to access the "
    "gateway port through the gateway Service, it will not be available.",
    "Gateway port not exposed by service",
)

ENVOY_FILTER_USES_RELATIVE_OPERATION = _t(
    "IST0151",
    "EnvoyFilterUsesRelativeOperation",
    INFO,
    "This EnvoyFilter does not have a priority and has a relative patch operation set which "
    "can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST or ADD option or "
    "setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    "This EnvoyFilter does not have a priority and has a relative patch operation set.",
)
ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY = _t(
    "IST0152",
    "EnvoyFilterUsesReplaceOperationIncorrectly",
    ERROR,
    "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
    "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.",
)
ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY = _t(
    "IST0153",
    "EnvoyFilterUsesAddOperationIncorrectly",
    ERROR,
    "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
    "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or HTTP_ROUTE.",
)
ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY = _t(
    "IST0154",
    "EnvoyFilterUsesRemoveOperationIncorrectly",
    ERROR,
    "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or "
    "HTTP_ROUTE.",
    "The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or "
    "HTTP_ROUTE.",
)
ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION = _t(
    "IST0155",
    "EnvoyFilterUsesRelativeOperationWithProxyVersion",
    WARNING,
    "This EnvoyFilter does not have a priority and has a relative patch operation (REPLACE, "
    "MERGE, REMOVE, INSERT_BEFORE, INSERT_AFTER) and proxyVersion set which can cause the "
    "EnvoyFilter not to be applied during an upgrade. Using the INSERT_FIRST or ADD option or "
    "setting the priority may help in ensuring the EnvoyFilter is applied correctly.",
    "This EnvoyFilter does not have a priority and has a relative patch operation and "
    "proxyVersion set.",
)


POD_MISSING_PROXY = _t(
    "IST0103",
    "PodMissingProxy",
    WARNING,
    "The pod {} is missing the Istio proxy. This can often be resolved by restarting or "
    "redeploying the workload.",
    "A pod is missing the Istio proxy.",
)
DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES = _t(
    "IST0116",
    "DeploymentAssociatedToMultipleServices",
    WARNING,
    "This deployment {} is associated with multiple services using port {} but different "
    "protocols: {}",
    "The resulting pods of a service mesh deployment can't be associated with multiple "
    "services using the same port but different protocols.",
)
SERVICE_ENTRY_ADDRESSES_REQUIRED = _t(
    "IST0134",
    "ServiceEntryAddressesRequired",
    WARNING,
    "ServiceEntry addresses are required for this protocol.",
    "Virtual IP addresses are required for ports serving TCP (or unset) protocol",
)
DEPLOYMENT_CONFLICTING_PORTS = _t(
    "IST0137",
    "DeploymentConflictingPorts",
    WARNING,
    'This deployment {} is associated with multiple services {} using targetPort "{}" but '
    "different ports: {}.",
    "Two services selecting the same workload with the same targetPort MUST refer to the same "
    "port.",
)
GATEWAY_DUPLICATE_CERTIFICATE = _t(
    "IST0138",
    "GatewayDuplicateCertificate",
    WARNING,
    "Duplicate certificate in multiple gateways {} may cause 404s if clients re-use HTTP2 "
    "connections.",
    "Duplicate certificate in multiple gateways may cause 404s if clients re-use HTTP2 "
    "connections.",
)
INGRESS_ROUTE_RULES_NOT_AFFECTED = _t(
    "IST0140",
    "IngressRouteRulesNotAffected",
    WARNING,
    "Subset in virtual service {} has no effect on ingress gateway {} requests",
    "Route rules have no effect on ingress gateway requests",
)
INVALID_APPLICATION_UID = _t(
    "IST0144",
    "InvalidApplicationUID",
    WARNING,
    "User ID (UID) 1337 is reserved for the sidecar proxy.",
    "Application pods should not run as user ID (UID) 1337",
)
JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN = _t(
    "IST0149",
    "JwtClaimBasedRoutingWithoutRequestAuthN",
    ERROR,
    "The virtual service uses the JWT claim based routing (key: {}) but found no request "
    "authentication for the gateway ({}) pod ({}). The request authentication must first be "
    "applied for the gateway pods to validate the JWT token and make the claims available "
    "for routing.",
    "Virtual service using JWT claim based routing without request authentication.",
)
EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME = _t(
    "IST0150",
    "ExternalNameServiceTypeInvalidPortName",
    WARNING,
    "Port name for ExternalName service is invalid. Proxy may prevent tcp named ports and "
    "unmatched traffic for ports serving TCP protocol from being forwarded correctly",
    "Proxy may prevent tcp named ports and unmatched traffic for ports serving TCP protocol "
    "from being forwarded correctly for ExternalName services.",
)
INVALID_GATEWAY_CREDENTIAL = _t(
    "IST0161",
    "InvalidGatewayCredential",
    ERROR,
    "The credential referenced by the Gateway {} in namespace {} is invalid, which can cause "
    "the traffic not to work as expected.",
    "The credential provided for the Gateway resource is invalid",
)
INEFFECTIVE_POLICY = _t(
    "IST0167",
    "IneffectivePolicy",
    WARNING,
    "The policy has no impact: {}.",
    "A policy has no impact.",
)
DESTINATION_RULE_SUBSET_NOT_SELECT_PODS = _t(
    "IST0173",
    "DestinationRuleSubsetNotSelectPods",
    ERROR,
    "The Subset {} defined in the DestinationRule does not select any pods. Which may lead to "
    "503 UH (NoHealthyUpstream).",
    "Subset in DestinationRule does not select any Pods.",
)
UNKNOWN_DESTINATION_RULE_HOST = _t(
    "IST0174",
    "UnknownDestinationRuleHost",
    WARNING,
    "The host {} defined in the DestinationRule does not match any services in the mesh.",
    "Host defined in the DestinationRule does not match any services in the mesh.",
)
JWKS_URI_FETCH_UNRESTRICTED = _t(
    "IST0175",
    "JwksUriFetchUnrestricted",
    WARNING,
    "BLOCKED_CIDRS_IN_JWKS_URIS is not configured on the control plane, but {} "
    "RequestAuthentication resource(s) exist ({}): their JWKS URIs and issuers are fetched "
    "from any address except link-local and cloud metadata ones. Set "
    "values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS to the networks that must not be reached.",
    "RequestAuthentication resources exist but BLOCKED_CIDRS_IN_JWKS_URIS is not configured.",
)
CONFLICTING_SERVICE_ENTRY_PROTOCOL = _t(
    "IST0177",
    "ConflictingServiceEntryProtocol",
    WARNING,
    'Multiple ServiceEntries ({}) define the same host "{}" and port {} with conflicting '
    "protocols ({}).",
    "ServiceEntries visible in the same namespace define the same host and port with "
    "different protocols.",
)


#: Every message type Pilotfish can report, by code.
CATALOGUE: dict[str, MessageType] = {
    t.code: t
    for t in (
        INTERNAL_ERROR,
        DEPRECATED,
        REFERENCED_RESOURCE_NOT_FOUND,
        NAMESPACE_NOT_INJECTED,
        SCHEMA_VALIDATION_ERROR,
        CONFLICTING_MESH_GATEWAY_VIRTUAL_SERVICE_HOSTS,
        CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
        MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
        VIRTUAL_SERVICE_DESTINATION_PORT_SELECTOR_REQUIRED,
        MTLS_POLICY_CONFLICT,
        PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
        JWT_FAILURE_DUE_TO_INVALID_SERVICE_PORT_PREFIX,
        INVALID_REGEXP,
        NO_MATCHING_WORKLOADS_FOUND,
        NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
        NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
        VIRTUAL_SERVICE_UNREACHABLE_RULE,
        VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
        VIRTUAL_SERVICE_HOST_NOT_FOUND_IN_GATEWAY,
        SCHEMA_WARNING,
        CONFLICTING_GATEWAYS,
        INVALID_TELEMETRY_PROVIDER,
        CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
        MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
        GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
        ENVOY_FILTER_USES_RELATIVE_OPERATION,
        ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY,
        ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY,
        ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY,
        ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
        POD_MISSING_PROXY,
        DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
        SERVICE_ENTRY_ADDRESSES_REQUIRED,
        DEPLOYMENT_CONFLICTING_PORTS,
        GATEWAY_DUPLICATE_CERTIFICATE,
        INGRESS_ROUTE_RULES_NOT_AFFECTED,
        INVALID_APPLICATION_UID,
        JWT_CLAIM_BASED_ROUTING_WITHOUT_REQUEST_AUTHN,
        EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME,
        INVALID_GATEWAY_CREDENTIAL,
        INEFFECTIVE_POLICY,
        DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
        UNKNOWN_DESTINATION_RULE_HOST,
        JWKS_URI_FETCH_UNRESTRICTED,
        CONFLICTING_SERVICE_ENTRY_PROTOCOL,
    )
}
