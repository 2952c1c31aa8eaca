"""Security analyzers: AuthorizationPolicy targets and namespaces, and mTLS settings that
disagree between client and server.

- IST0127: an AuthorizationPolicy selects no workload (a namespace-wide one: its namespace
  has no workload; one in the root namespace with a selector: no workload anywhere matches).
  Policies attached with ``targetRef(s)`` are not checked.
- IST0101 ``namespace``: a ``from.source.namespaces``/``notNamespaces`` pattern matches no
  namespace.
- IST0113: a DestinationRule says mTLS on (``ISTIO_MUTUAL``) for a service whose namespace's
  PeerAuthentication says DISABLE, or mTLS off (``DISABLE``) where it says STRICT; requests
  then fail. The PeerAuthentication considered is the namespace-wide one of the service's
  namespace, else the mesh-wide one of the root namespace (workload-specific ones are not).
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.destinationrule import DestinationRule
from pilotfish.api.security import AuthorizationPolicy, PeerAuthentication
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import namespace_pattern_matches, selector_string

__all__ = [
    "analyze_authorization_namespaces",
    "analyze_authorization_workloads",
    "analyze_mtls_conflicts",
]


def analyze_authorization_workloads(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0127 for AuthorizationPolicies that apply to no workload."""
    root = ctx.settings.root_namespace
    for e, ap in ctx.of_kind("AuthorizationPolicy", AuthorizationPolicy):
        spec = ap.spec
        if spec.targetRef is not None or spec.targetRefs:
            continue
        labels = spec.selector.matchLabels if spec.selector is not None else {}
        if e.namespace == root:
            if labels and not ctx.workloads_selected(labels, None):
                yield e.message(
                    m.NO_MATCHING_WORKLOADS_FOUND, selector_string(labels), path="spec.selector"
                )
            continue
        if not ctx.workloads_selected(labels, e.namespace):
            path = "spec.selector" if labels else ""
            yield e.message(m.NO_MATCHING_WORKLOADS_FOUND, selector_string(labels), path=path)


def analyze_authorization_namespaces(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``namespace`` for source namespace patterns that match no namespace."""
    for e, ap in ctx.of_kind("AuthorizationPolicy", AuthorizationPolicy):
        for i, rule in enumerate(ap.spec.rules):
            for j, rf in enumerate(rule.from_):
                src = rf.source
                if src is None:
                    continue
                for field, patterns in (
                    ("namespaces", src.namespaces),
                    ("notNamespaces", src.notNamespaces),
                ):
                    for k, pattern in enumerate(patterns):
                        if not any(namespace_pattern_matches(pattern, n) for n in ctx.namespaces):
                            yield e.message(
                                m.REFERENCED_RESOURCE_NOT_FOUND,
                                "namespace",
                                pattern,
                                path=f"spec.rules[{i}].from[{j}].source.{field}[{k}]",
                            )


def _namespace_policy(ctx: AnalysisContext, namespace: str) -> tuple[Entry, str] | None:
    """The PeerAuthentication deciding a namespace's mode: namespace-wide, then mesh-wide."""
    root = ctx.settings.root_namespace
    for ns in (namespace, root):
        candidates = sorted(
            (
                (e, pa)
                for e, pa in ctx.of_kind("PeerAuthentication", PeerAuthentication)
                if e.namespace == ns
                and (pa.spec.selector is None or not pa.spec.selector.matchLabels)
            ),
            key=lambda item: item[0].name,
        )
        for e, pa in candidates:
            mode = pa.spec.mtls.mode if pa.spec.mtls is not None else None
            if mode and mode != "UNSET":
                return e, mode
        if ns == root:
            break
    return None


def analyze_mtls_conflicts(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0113 for DestinationRule mTLS against the server side's PeerAuthentication."""
    for e, dr in ctx.of_kind("DestinationRule", DestinationRule):
        policy = dr.spec.trafficPolicy
        mode = policy.tls.mode if policy is not None and policy.tls is not None else None
        if mode not in ("ISTIO_MUTUAL", "DISABLE"):
            continue
        service = ctx.find_service(dr.spec.host, e.namespace)
        if service is None or service.source.kind != "Service":
            continue
        decided = _namespace_policy(ctx, service.namespace)
        if decided is None:
            continue
        pa_entry, pa_mode = decided
        wants_mtls = mode == "ISTIO_MUTUAL"
        if (wants_mtls and pa_mode == "DISABLE") or (not wants_mtls and pa_mode == "STRICT"):
            yield e.message(
                m.MTLS_POLICY_CONFLICT,
                service.hostname,
                f"{e.namespace}/{e.name}",
                "true" if wants_mtls else "false",
                f"{pa_entry.namespace}/{pa_entry.name}",
                pa_mode,
                path="spec.trafficPolicy.tls.mode",
            )
