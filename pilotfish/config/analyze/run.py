"""Running the analyzers: the list of them, scoping findings to a namespace, ordering.

``analyze(inputs, namespace=...)`` is the whole pipeline, pure: build the context (schema
messages included), run every analyzer, keep the findings in scope, drop duplicates and sort
them (errors first, then by resource, code and field). A finding is in scope when no
namespace is asked for (``-A``), when its resource is in the namespace (or is that Namespace),
or when its resource was read from a file the user named: files are what the user asked about,
whatever namespace they write to. Resources elsewhere still count as references, as in
``istioctl analyze``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pilotfish.config.analyze import (
    destinationrule,
    envoyfilter,
    gateway,
    kube,
    matches,
    security,
    serviceentry,
    virtualservice,
    workloads,
)
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import (
    AnalysisContext,
    AnalysisSettings,
    Input,
    build_context,
)
from pilotfish.config.analyze.messages import Message, ResourceKey

__all__ = [
    "ANALYZERS",
    "SUPPRESS_ANNOTATION",
    "Analyzer",
    "Suppression",
    "analyze",
    "in_scope",
    "run_analyzers",
    "suppress",
    "suppressed_by_annotation",
]


@dataclass(frozen=True, slots=True)
class Analyzer:
    """One analyzer: a name as istioctl lists it, the codes it reports, the function."""

    name: str
    description: str
    codes: tuple[str, ...]
    run: Callable[[AnalysisContext], Iterable[Message]]


ANALYZERS: tuple[Analyzer, ...] = (
    Analyzer(
        "virtualservice.DestinationAnalyzer",
        "Checks the destination hosts, ports and subsets of each VirtualService",
        ("IST0101", "IST0112"),
        virtualservice.analyze_destinations,
    ),
    Analyzer(
        "virtualservice.GatewayAnalyzer",
        "Checks the gateways a VirtualService refers to",
        ("IST0101",),
        virtualservice.analyze_gateway_references,
    ),
    Analyzer(
        "virtualservice.GatewayHostAnalyzer",
        "Checks that bound Gateways serve the VirtualService's hosts",
        ("IST0132",),
        virtualservice.analyze_gateway_hosts,
    ),
    Analyzer(
        "virtualservice.JWTClaimRouteAnalyzer",
        "Checks that routing on JWT claims has a RequestAuthentication on the gateway",
        ("IST0149",),
        virtualservice.analyze_jwt_claim_routes,
    ),
    Analyzer(
        "virtualservice.IngressSubsetAnalyzer",
        "Checks for subset splits that gateway requests do not get",
        ("IST0140",),
        virtualservice.analyze_ingress_subsets,
    ),
    Analyzer(
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
        "Checks that mesh-bound VirtualServices do not define the same host",
        ("IST0109",),
        virtualservice.analyze_conflicting_mesh_hosts,
    ),
    Analyzer(
        "deprecation.FieldAnalyzer",
        "Checks for deprecated VirtualService fields",
        ("IST0002",),
        virtualservice.analyze_deprecated_fields,
    ),
    Analyzer(
        "virtualservice.RegexAnalyzer",
        "Checks that the regexes of VirtualService matches compile",
        ("IST0122",),
        virtualservice.analyze_regexes,
    ),
    Analyzer(
        "virtualservice.UnreachableRulesAnalyzer",
        "Checks for HTTP, TCP and TLS rules and matches that can never be used",
        ("IST0130", "IST0131"),
        matches.analyze_unreachable_rules,
    ),
    Analyzer(
        "destinationrule.HostAnalyzer",
        "Checks that each DestinationRule's host is a known service",
        ("IST0174",),
        destinationrule.analyze_destination_rule_hosts,
    ),
    Analyzer(
        "destinationrule.PodNotSelectedAnalyzer",
        "Checks that each DestinationRule subset selects workloads",
        ("IST0173",),
        destinationrule.analyze_subset_workloads,
    ),
    Analyzer(
        "destinationrule.CaCertificateAnalyzer",
        "Checks that SIMPLE/MUTUAL client TLS verifies the server",
        ("IST0128", "IST0129"),
        destinationrule.analyze_ca_certificates,
    ),
    Analyzer(
        "gateway.IngressGatewayPortAnalyzer",
        "Checks a Gateway's selector and ports against its workloads",
        ("IST0101", "IST0162"),
        gateway.analyze_gateway_workloads,
    ),
    Analyzer(
        "gateway.SecretAnalyzer",
        "Checks that Gateway credentials exist",
        ("IST0101",),
        gateway.analyze_gateway_credentials,
    ),
    Analyzer(
        "gateway.ConflictingGatewayAnalyzer",
        "Checks Gateways for the same workload, port and hosts",
        ("IST0145",),
        gateway.analyze_conflicting_gateways,
    ),
    Analyzer(
        "gateway.CertificateAnalyzer",
        "Checks Gateways of the same workloads for a shared certificate",
        ("IST0138",),
        gateway.analyze_duplicate_certificates,
    ),
    Analyzer(
        "gateway.CredentialAnalyzer",
        "Checks that Gateway credentials hold a certificate and a key",
        ("IST0161",),
        gateway.analyze_invalid_credentials,
    ),
    Analyzer(
        "serviceentry.ProtocolAddressesAnalyzer",
        "Checks that TCP ServiceEntry ports have addresses",
        ("IST0134",),
        serviceentry.analyze_protocol_addresses,
    ),
    Analyzer(
        "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
        "Checks ServiceEntries for one host and port with different protocols",
        ("IST0177",),
        serviceentry.analyze_conflicting_protocols,
    ),
    Analyzer(
        "injection.PodMissingProxyAnalyzer",
        "Checks that running pods of injected namespaces have the proxy",
        ("IST0103",),
        kube.analyze_missing_proxy,
    ),
    Analyzer(
        "deployment.MultiServiceAnalyzer",
        "Checks the Services that select each Deployment",
        ("IST0116", "IST0137"),
        kube.analyze_deployment_services,
    ),
    Analyzer(
        "deployment.ApplicationUIDAnalyzer",
        "Checks that applications do not run as the proxy's UID 1337",
        ("IST0144",),
        kube.analyze_application_uid,
    ),
    Analyzer(
        "sidecar.AmbientAnalyzer",
        "Checks for Sidecars that apply to ambient workloads only",
        ("IST0167",),
        kube.analyze_sidecar_ambient,
    ),
    Analyzer(
        "auth.AuthorizationPoliciesAnalyzer",
        "Checks AuthorizationPolicy workloads and namespaces",
        ("IST0101", "IST0127"),
        lambda ctx: [
            *security.analyze_authorization_workloads(ctx),
            *security.analyze_authorization_namespaces(ctx),
        ],
    ),
    Analyzer(
        "auth.MTLSAnalyzer",
        "Checks DestinationRule mTLS against PeerAuthentication",
        ("IST0113",),
        security.analyze_mtls_conflicts,
    ),
    Analyzer(
        "auth.JwtServicePortAnalyzer",
        "Checks that RequestAuthentication targets HTTP service ports",
        ("IST0119",),
        security.analyze_jwt_service_ports,
    ),
    Analyzer(
        "authn.BlockedCIDRsAnalyzer",
        "Checks that BLOCKED_CIDRS_IN_JWKS_URIS is configured when RequestAuthentications exist",
        ("IST0175",),
        security.analyze_jwks_blocked_cidrs,
    ),
    Analyzer(
        "injection.Analyzer",
        "Checks that namespaces with workloads are enabled for injection",
        ("IST0102",),
        workloads.analyze_injection,
    ),
    Analyzer(
        "service.PortNameAnalyzer",
        "Checks the port names of each Service",
        ("IST0118", "IST0150"),
        workloads.analyze_port_names,
    ),
    Analyzer(
        "sidecar.SelectorAnalyzer",
        "Checks the workload selectors of Sidecars",
        ("IST0110", "IST0111"),
        workloads.analyze_sidecar_selectors,
    ),
    Analyzer(
        "telemetry.SelectorAnalyzer",
        "Checks the workload selectors of Telemetries",
        ("IST0159", "IST0160"),
        workloads.analyze_telemetry_selectors,
    ),
    Analyzer(
        "telemetry.ProviderAnalyzer",
        "Checks that access logging names a provider",
        ("IST0157",),
        workloads.analyze_telemetry_providers,
    ),
    Analyzer(
        "envoyfilter.EnvoyPatchAnalyzer",
        "Checks EnvoyFilters whose relative patches depend on the order filters apply in",
        ("IST0151", "IST0155"),
        envoyfilter.analyze_relative_operations,
    ),
    Analyzer(
        "envoyfilter.EnvoyPatchOperationAnalyzer",
        "Checks EnvoyFilter patches whose operation their applyTo ignores",
        ("IST0152", "IST0153", "IST0154"),
        envoyfilter.analyze_unsupported_operations,
    ),
)


def run_analyzers(ctx: AnalysisContext, analyzers: Iterable[Analyzer] = ANALYZERS) -> list[Message]:
    """Every analyzer's findings; an analyzer that fails reports IST0001 instead of stopping
    the others."""
    out: list[Message] = []
    for a in analyzers:
        try:
            out.extend(a.run(ctx))
        except Exception as exc:  # one broken analyzer must not hide the others
            t = m.INTERNAL_ERROR
            out.append(
                Message(t, ResourceKey("Analyzer", "", a.name), t.render(f"{a.name}: {exc!r}"))
            )
    return out


def in_scope(msg: Message, namespace: str | None) -> bool:
    """See the module docstring."""
    if namespace is None or msg.origin is not None:
        return True
    r = msg.resource
    if r.kind == "Analyzer":
        return True
    if r.namespace:
        return r.namespace == namespace
    return r.kind == "Namespace" and r.name == namespace


def analyze(
    inputs: Iterable[Input],
    *,
    namespace: str | None = None,
    settings: AnalysisSettings | None = None,
    analyzers: Iterable[Analyzer] = ANALYZERS,
    suppressions: Iterable[Suppression] = (),
) -> list[Message]:
    """Schema and cross-resource findings for ``inputs``, in scope, deduplicated, sorted,
    without the suppressed ones (``suppressions`` and each resource's
    ``galley.istio.io/analyze-suppress`` annotation)."""
    ctx, schema = build_context(inputs, settings)
    found = suppress(
        schema + run_analyzers(ctx, analyzers), suppressions, suppressed_by_annotation(ctx)
    )
    unique: dict[tuple[object, ...], Message] = {}
    for msg in found:
        if in_scope(msg, namespace):
            unique.setdefault((msg.code, msg.resource, msg.path, msg.text), msg)
    return sorted(unique.values(), key=Message.sort_key)


#: A resource annotation listing codes (``IST0102,IST0107`` or ``*``) to suppress for it.
SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"


@dataclass(frozen=True, slots=True)
class Suppression:
    """One ``--suppress "CODE=RESOURCE"`` rule: a code (or message name) and a resource
    pattern (``Kind namespace/name`` or istioctl's ``Kind name.namespace``; ``*`` matches any
    run of characters)."""

    code: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Suppression:
        code, sep, resource = text.partition("=")
        if not sep or not code.strip() or not resource.strip():
            raise ValueError(
                f'invalid suppression "{text}": write CODE=RESOURCE, '
                'e.g. "IST0102=Namespace frod" or "PodMissingProxy=Pod *.default"'
            )
        return cls(code.strip(), resource.strip())

    def matches(self, msg: Message) -> bool:
        if self.code not in (msg.code, msg.type.name):
            return False
        r = msg.resource
        names = [str(r)]
        if r.namespace:
            names.append(f"{r.kind} {r.name}.{r.namespace}")
        return any(fnmatch.fnmatchcase(n, self.resource) for n in names)


def _annotation_suppressed(msg: Message, annotations: dict[ResourceKey, set[str]]) -> bool:
    codes = annotations.get(msg.resource) or set()
    return "*" in codes or msg.code in codes


def suppress(
    messages: Iterable[Message],
    rules: Iterable[Suppression] = (),
    annotations: dict[ResourceKey, set[str]] | None = None,
) -> list[Message]:
    """``messages`` without those a rule or a resource's suppress annotation removes."""
    rules = list(rules)
    annotations = annotations or {}
    return [
        msg
        for msg in messages
        if not any(rule.matches(msg) for rule in rules)
        and not _annotation_suppressed(msg, annotations)
    ]


def suppressed_by_annotation(ctx: AnalysisContext) -> dict[ResourceKey, set[str]]:
    """The codes each resource suppresses for itself through its annotation."""
    out: dict[ResourceKey, set[str]] = {}
    for e in ctx.entries:
        meta = e.body.get("metadata") if e.body else None
        notes = meta.get("annotations") if isinstance(meta, dict) else None
        value = notes.get(SUPPRESS_ANNOTATION) if isinstance(notes, dict) else None
        if isinstance(value, str) and value.strip():
            out[e.key] = {c.strip() for c in value.split(",") if c.strip()}
    return out
