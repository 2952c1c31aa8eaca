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

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pilotfish.config.analyze import (
    destinationrule,
    envoyfilter,
    gateway,
    matches,
    security,
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

__all__ = ["ANALYZERS", "Analyzer", "analyze", "in_scope", "run_analyzers"]


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
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
        "Checks that mesh-bound VirtualServices do not define the same host",
        ("IST0109",),
        virtualservice.analyze_conflicting_mesh_hosts,
    ),
    Analyzer(
        "virtualservice.UnreachableRulesAnalyzer",
        "Checks for HTTP rules and matches that can never be used",
        ("IST0130", "IST0131"),
        matches.analyze_unreachable_rules,
    ),
    Analyzer(
        "destinationrule.HostAnalyzer",
        "Checks that each DestinationRule's host is a known service",
        ("IST0101",),
        destinationrule.analyze_destination_rule_hosts,
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
        "injection.Analyzer",
        "Checks that namespaces with workloads are enabled for injection",
        ("IST0102",),
        workloads.analyze_injection,
    ),
    Analyzer(
        "service.PortNameAnalyzer",
        "Checks the port names of each Service",
        ("IST0118",),
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
) -> list[Message]:
    """Schema and cross-resource findings for ``inputs``, in scope, deduplicated, sorted."""
    ctx, schema = build_context(inputs, settings)
    found = schema + run_analyzers(ctx, analyzers)
    unique: dict[tuple[object, ...], Message] = {}
    for msg in found:
        if in_scope(msg, namespace):
            unique.setdefault((msg.code, msg.resource, msg.path, msg.text), msg)
    return sorted(unique.values(), key=Message.sort_key)
