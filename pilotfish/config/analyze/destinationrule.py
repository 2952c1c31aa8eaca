"""DestinationRule analyzers: the host it configures, its subsets, and client TLS that
verifies nothing.

- IST0174: the rule's (non-wildcard) host is no Service or ServiceEntry host visible from its
  namespace, so the rule applies to nothing.
- IST0173: a subset whose labels (with the ServiceEntry's ``workloadSelector`` labels, for a
  ServiceEntry host) select no workload in the host's namespace (pods, Deployment pod
  templates, WorkloadEntries, a ServiceEntry's inline endpoints): requests routed to it get
  503 UH.
- IST0128 / IST0129: ``tls.mode`` SIMPLE or MUTUAL without ``caCertificates`` (nor a
  ``credentialName`` that brings a CA, nor ``insecureSkipVerify``), for the whole rule or one
  port; the server's certificate is then not verified.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.destinationrule import ClientTLSSettings, DestinationRule
from pilotfish.api.networking import ServiceEntry
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, ServiceHost
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import labels_match

__all__ = [
    "analyze_ca_certificates",
    "analyze_destination_rule_hosts",
    "analyze_subset_workloads",
]

KIND = "DestinationRule"


def analyze_destination_rule_hosts(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0174 for a rule whose host names no known service."""
    for e, dr in ctx.of_kind(KIND, DestinationRule):
        host = dr.spec.host
        if not host or "*" in host:
            continue
        if ctx.find_service(host, e.namespace) is None:
            yield e.message(m.UNKNOWN_DESTINATION_RULE_HOST, host, path="spec.host")


def _candidate_labels(
    ctx: AnalysisContext, service: ServiceHost
) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The labels a subset adds to (the ServiceEntry's selector) and the label sets of the
    workloads that may serve the host."""
    base: dict[str, str] = {}
    sets = [dict(w.labels) for w in ctx.workloads if w.namespace == service.namespace]
    if service.source.kind == "ServiceEntry":
        for e, se in ctx.of_kind("ServiceEntry", ServiceEntry):
            if e.key != service.source:
                continue
            if se.spec.workloadSelector is not None:
                base = dict(se.spec.workloadSelector.labels)
            sets.extend(dict(ep.labels) for ep in se.spec.endpoints)
    return base, sets


def analyze_subset_workloads(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0173 for subsets that select no workload of the rule's host."""
    for e, dr in ctx.of_kind(KIND, DestinationRule):
        if not dr.spec.subsets or not dr.spec.host or "*" in dr.spec.host:
            continue
        service = ctx.find_service(dr.spec.host, e.namespace)
        if service is None:
            continue  # IST0174
        base, sets = _candidate_labels(ctx, service)
        for i, subset in enumerate(dr.spec.subsets):
            selector = {**base, **subset.labels}
            if not any(labels_match(selector, labels) for labels in sets):
                yield e.message(
                    m.DESTINATION_RULE_SUBSET_NOT_SELECT_PODS,
                    subset.name,
                    path=f"spec.subsets[{i}].name",
                )


def _unverified(tls: ClientTLSSettings | None) -> str | None:
    """The mode when ``tls`` is SIMPLE/MUTUAL and nothing verifies the server."""
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL"):
        return None
    if tls.caCertificates or tls.credentialName or tls.insecureSkipVerify:
        return None
    return tls.mode


def analyze_ca_certificates(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0128 (rule level) and IST0129 (port level)."""
    for e, dr in ctx.of_kind(KIND, DestinationRule):
        policy = dr.spec.trafficPolicy
        if policy is None:
            continue
        name = f"{e.namespace}/{e.name}"
        mode = _unverified(policy.tls)
        if mode:
            yield e.message(
                m.NO_SERVER_CERTIFICATE_VERIFICATION_DESTINATION_LEVEL,
                name,
                e.namespace,
                mode,
                dr.spec.host,
                path="spec.trafficPolicy.tls",
            )
        for i, pls in enumerate(policy.portLevelSettings):
            mode = _unverified(pls.tls)
            if mode:
                port = pls.port.number if pls.port is not None else None
                yield e.message(
                    m.NO_SERVER_CERTIFICATE_VERIFICATION_PORT_LEVEL,
                    name,
                    e.namespace,
                    mode,
                    dr.spec.host,
                    port if port is not None else "",
                    path=f"spec.trafficPolicy.portLevelSettings[{i}].tls",
                )
