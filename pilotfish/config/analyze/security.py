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
- IST0119: a RequestAuthentication with JWT rules that targets workloads (``selector``, or a
  ``targetRef`` to a Service) behind a Service port that is not HTTP (HTTP, HTTP2, gRPC,
  gRPC-Web by ``appProtocol`` or name prefix): the proxy handles that port as TCP, so tokens
  are never checked on it. Namespace-wide and mesh-wide ones are not checked (Istio checked
  only the services a policy targets).
- IST0175: RequestAuthentications exist while the control plane's IstioOperator does not set
  ``values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS`` (reported on each IstioOperator, as Istio
  reports it on istiod's Deployment; without an IstioOperator among the resources, nothing is
  reported, as istioctl reports nothing without istiod's Deployment).
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.core import Service, ServicePort
from pilotfish.api.destinationrule import DestinationRule
from pilotfish.api.meshconfig import blocked_cidrs_in_jwks_uris
from pilotfish.api.security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.kube import port_protocol
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import (
    labels_match,
    namespace_pattern_matches,
    selector_string,
)

__all__ = [
    "analyze_authorization_namespaces",
    "analyze_authorization_workloads",
    "analyze_jwks_blocked_cidrs",
    "analyze_jwt_service_ports",
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


#: Protocols whose ports get the proxy's HTTP filters (``jwt_authn`` among them).
_JWT_PROTOCOLS = ("HTTP", "HTTP2", "GRPC", "GRPC-Web")


def _targeted_services(
    ctx: AnalysisContext, e: Entry, ra: RequestAuthentication
) -> tuple[list[Service], str]:
    """The Services in front of what a RequestAuthentication targets, and the field path."""
    spec = ra.spec
    services = [
        (se, svc) for se, svc in ctx.of_kind("Service", Service) if se.namespace == e.namespace
    ]
    refs = list(spec.targetRefs) + ([spec.targetRef] if spec.targetRef is not None else [])
    if refs:
        names = {r.name for r in refs if r.kind == "Service"}
        path = "spec.targetRefs" if spec.targetRefs else "spec.targetRef"
        return [svc for se, svc in services if se.name in names], path
    labels = spec.selector.matchLabels if spec.selector is not None else {}
    if not labels:
        return [], ""
    workloads = ctx.workloads_selected(labels, e.namespace)
    return [
        svc
        for _, svc in services
        if svc.spec.selector and any(labels_match(svc.spec.selector, w.labels) for w in workloads)
    ], "spec.selector"


def _target_port(p: ServicePort) -> str:
    return str(p.targetPort) if p.targetPort not in (None, "") else str(p.port)


def analyze_jwt_service_ports(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0119 for JWT rules on workloads whose Service ports are not HTTP."""
    for e, ra in ctx.of_kind("RequestAuthentication", RequestAuthentication):
        if not ra.spec.jwtRules:
            continue
        services, path = _targeted_services(ctx, e, ra)
        for svc in services:
            for p in svc.spec.ports:
                if port_protocol(p.name, p.appProtocol, p.protocol) in _JWT_PROTOCOLS:
                    continue
                yield e.message(
                    m.JWT_FAILURE_DUE_TO_INVALID_SERVICE_PORT_PREFIX,
                    p.port,
                    p.name or "",
                    (p.protocol or "TCP").upper(),
                    _target_port(p),
                    path=path,
                )


def _names_text(names: list[str], shown: int = 5) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])}, and {len(names) - shown} more"


def analyze_jwks_blocked_cidrs(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0175 when RequestAuthentications exist and no IstioOperator blocks any CIDR."""
    authns = ctx.by_kind.get("RequestAuthentication", [])
    names = sorted(f"{e.namespace}/{e.key.name}" for e in authns)
    operators = ctx.by_kind.get("IstioOperator", [])
    if not names or not operators:
        return
    if blocked_cidrs_in_jwks_uris(e.body for e in operators).strip(" ,"):
        return
    for e in operators:
        yield e.message(m.JWKS_URI_FETCH_UNRESTRICTED, len(names), _names_text(names))
