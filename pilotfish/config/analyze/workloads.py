"""Analyzers about namespaces, Services and the per-workload kinds (Sidecar, Telemetry).

- IST0102: a namespace runs workloads (pods or Deployments) but has neither an
  ``istio-injection`` nor an ``istio.io/rev`` label (system namespaces are skipped).
- IST0118: a Service port whose name does not say its protocol (``http``, ``http-web``,
  ``grpc``, ``tcp-db``...) and that has no ``appProtocol``. Pilotfish does not sniff
  protocols, so such a port is plain TCP: no HTTP routing, retries or metrics by path.
- IST0111 / IST0160: several Sidecars / Telemetries in one namespace without a selector.
- IST0110 / IST0159: several Sidecars / Telemetries of a namespace select the same workload.
- IST0157: a Telemetry ``accessLogging`` entry without providers (Pilotfish has no default
  access log provider, so the entry does nothing); entries with ``disabled: true`` are fine.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from pilotfish.api.core import Service
from pilotfish.api.networking import Sidecar
from pilotfish.api.telemetry import Telemetry
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.kube import port_protocol
from pilotfish.config.analyze.messages import Message, MessageType, ResourceKey
from pilotfish.config.analyze.names import labels_match

__all__ = [
    "analyze_injection",
    "analyze_port_names",
    "analyze_sidecar_selectors",
    "analyze_telemetry_providers",
    "analyze_telemetry_selectors",
]

INJECTION_LABELS = ("istio-injection", "istio.io/rev")

#: Protocol names Istio recognises in port names and ``appProtocol``.
PROTOCOLS = frozenset(
    {
        "http",
        "http2",
        "h2c",
        "https",
        "grpc",
        "grpc-web",
        "http_proxy",
        "tcp",
        "tls",
        "udp",
        "mongo",
        "mysql",
        "redis",
    }
)


def analyze_injection(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0102 for namespaces with workloads and no injection label."""
    with_workloads = sorted({w.namespace for w in ctx.workloads if w.kind in ("Pod", "Deployment")})
    ns_entries = {e.name: e for e in ctx.by_kind.get("Namespace", [])}
    for ns in with_workloads:
        if ctx.is_system_namespace(ns):
            continue
        labels = ctx.namespace_labels.get(ns, {})
        if any(label in labels for label in INJECTION_LABELS):
            continue
        entry = ns_entries.get(ns)
        t = m.NAMESPACE_NOT_INJECTED
        if entry is not None:
            yield entry.message(t, ns, ns, path="metadata.labels")
        else:
            yield Message(t, ResourceKey("Namespace", "", ns), t.render(ns, ns))


def protocol_named(name: str | None, app_protocol: str | None, protocol: str | None) -> bool:
    """Istio's explicit protocol selection finds a protocol for this port."""
    if app_protocol and app_protocol.lower().rsplit("/", 1)[-1] in PROTOCOLS:
        return True
    if (protocol or "").upper() == "UDP":
        return True
    n = (name or "").lower()
    if n.startswith("grpc-web"):
        return True
    return n.split("-", 1)[0] in PROTOCOLS


def analyze_port_names(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0118 for Service ports without a protocol in their name; IST0150 for ExternalName
    Services whose ports are TCP (named ``tcp``, or not named after a protocol)."""
    for e, svc in ctx.of_kind("Service", Service):
        if ctx.is_system_namespace(e.namespace):
            continue
        if svc.spec.type == "ExternalName":
            for i, p in enumerate(svc.spec.ports):
                if port_protocol(p.name, p.appProtocol, p.protocol) == "TCP":
                    yield e.message(
                        m.EXTERNAL_NAME_SERVICE_TYPE_INVALID_PORT_NAME, path=f"spec.ports[{i}]"
                    )
            continue
        for i, p in enumerate(svc.spec.ports):
            if protocol_named(p.name, p.appProtocol, p.protocol):
                continue
            target = p.targetPort if p.targetPort is not None else p.port
            yield e.message(
                m.PORT_NAME_IS_NOT_UNDER_NAMING_CONVENTION,
                p.name or "",
                p.port,
                target,
                path=f"spec.ports[{i}]",
            )


def _per_workload(
    ctx: AnalysisContext,
    items: list[tuple[Entry, Mapping[str, str] | None]],
    unselected: MessageType,
    conflicting: MessageType,
) -> Iterator[Message]:
    """Shared rule of Sidecar and Telemetry: one unselected resource per namespace, one
    selecting resource per workload."""
    by_ns: dict[str, list[tuple[Entry, Mapping[str, str] | None]]] = {}
    for item in items:
        by_ns.setdefault(item[0].namespace, []).append(item)
    for ns, group in sorted(by_ns.items()):
        plain = [e for e, sel in group if not sel]
        if len(plain) > 1:
            names = "[" + " ".join(e.name for e in plain) + "]"
            for e in plain:
                yield e.message(unselected, names, ns, path="metadata.name")
        selecting = [(e, sel) for e, sel in group if sel]
        reported: set[ResourceKey] = set()
        for w in ctx.workloads:
            if w.namespace != ns:
                continue
            hits = [e for e, sel in selecting if sel and labels_match(sel, w.labels)]
            if len(hits) < 2:
                continue
            names = "[" + " ".join(e.name for e in hits) + "]"
            for e in hits:
                if e.key not in reported:
                    reported.add(e.key)
                    yield e.message(conflicting, names, ns, w.name, path="spec")


def analyze_sidecar_selectors(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0111 and IST0110."""
    items: list[tuple[Entry, Mapping[str, str] | None]] = [
        (e, sc.spec.workloadSelector.labels if sc.spec.workloadSelector else None)
        for e, sc in ctx.of_kind("Sidecar", Sidecar)
    ]
    yield from _per_workload(
        ctx,
        items,
        m.MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
        m.CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
    )


def analyze_telemetry_selectors(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0160 and IST0159 (Telemetries attached with targetRef(s) are not counted)."""
    items: list[tuple[Entry, Mapping[str, str] | None]] = [
        (e, t.spec.selector.matchLabels if t.spec.selector else None)
        for e, t in ctx.of_kind("Telemetry", Telemetry)
        if t.spec.targetRef is None and not t.spec.targetRefs
    ]
    yield from _per_workload(
        ctx,
        items,
        m.MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
        m.CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
    )


def analyze_telemetry_providers(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0157 for access logging without providers."""
    for e, t in ctx.of_kind("Telemetry", Telemetry):
        for i, al in enumerate(t.spec.accessLogging):
            if not al.providers and not al.disabled:
                yield e.message(
                    m.INVALID_TELEMETRY_PROVIDER,
                    e.name,
                    e.namespace,
                    path=f"spec.accessLogging[{i}]",
                )
