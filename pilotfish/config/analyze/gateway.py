"""Gateway analyzers: the workload a Gateway selects, its ports, its credentials, and servers
that clash with another Gateway's.

- IST0101 ``selector``: the selector matches no workload (pods, Deployments, WorkloadEntries,
  or the built-in ingress gateway).
- IST0162: a server port that no Service in front of the selected workloads exposes (the
  local ingress gateway runs in the host network and binds every Gateway port, so it is not
  checked; built-in workloads may list their ports in the settings instead).
- IST0101 ``credentialName``: no Secret of that name in the namespace of the selected
  workloads (in the Gateway's own namespace when it selects none).
- IST0145: two Gateways for the same workloads declare the same port with overlapping hosts.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.core import Service
from pilotfish.api.networking import Gateway
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry, Workload
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import hosts_intersect, labels_match, selector_string

__all__ = [
    "analyze_conflicting_gateways",
    "analyze_gateway_credentials",
    "analyze_gateway_workloads",
]

KIND = "Gateway"


def _selected(ctx: AnalysisContext, gw: Gateway) -> list[Workload]:
    """Istio matches a Gateway selector against workloads in every namespace."""
    return ctx.workloads_selected(gw.spec.selector, None)


def _service_ports(ctx: AnalysisContext, w: Workload) -> set[int]:
    if w.service_ports is not None:
        return set(w.service_ports)
    ports: set[int] = set()
    for svc_entry, svc in ctx.of_kind("Service", Service):
        if svc_entry.namespace != w.namespace or not svc.spec.selector:
            continue
        if labels_match(svc.spec.selector, w.labels):
            ports.update(p.port for p in svc.spec.ports if (p.protocol or "TCP") == "TCP")
    return ports


def analyze_gateway_workloads(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``selector`` and IST0162."""
    for e, gw in ctx.of_kind(KIND, Gateway):
        if not gw.spec.selector:
            continue
        selector = selector_string(gw.spec.selector)
        workloads = _selected(ctx, gw)
        if not workloads:
            yield e.message(
                m.REFERENCED_RESOURCE_NOT_FOUND, "selector", selector, path="spec.selector"
            )
            continue
        if any(w.every_port for w in workloads):
            continue
        ports: set[int] = set()
        for w in workloads:
            ports |= _service_ports(ctx, w)
        for i, server in enumerate(gw.spec.servers):
            if server.port.number and server.port.number not in ports:
                yield e.message(
                    m.GATEWAY_PORT_NOT_DEFINED_ON_SERVICE,
                    server.port.number,
                    selector,
                    path=f"spec.servers[{i}].port.number",
                )


def analyze_gateway_credentials(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0101 ``credentialName``."""
    for e, gw in ctx.of_kind(KIND, Gateway):
        namespaces = {w.namespace for w in _selected(ctx, gw)} if gw.spec.selector else set()
        namespaces = namespaces or {e.namespace}
        for i, server in enumerate(gw.spec.servers):
            tls = server.tls
            if tls is None:
                continue
            names = [(tls.credentialName, f"spec.servers[{i}].tls.credentialName")] + [
                (n, f"spec.servers[{i}].tls.credentialNames[{j}]")
                for j, n in enumerate(tls.credentialNames)
            ]
            for name, path in names:
                if not name:
                    continue
                ns, _, secret = name.rpartition("/")
                wanted = {ns} if ns else namespaces
                if not any((n, secret) in ctx.secrets for n in wanted):
                    yield e.message(
                        m.REFERENCED_RESOURCE_NOT_FOUND, "credentialName", name, path=path
                    )


def _same_workloads(ctx: AnalysisContext, a: Gateway, b: Gateway) -> bool:
    if selector_string(a.spec.selector) == selector_string(b.spec.selector):
        return True
    chosen = {(w.namespace, w.name, w.kind) for w in _selected(ctx, a)}
    return any((w.namespace, w.name, w.kind) in chosen for w in _selected(ctx, b))


def analyze_conflicting_gateways(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0145: same workloads, same port, overlapping hosts, different Gateways."""
    gateways = list(ctx.of_kind(KIND, Gateway))
    for e, gw in gateways:
        for i, server in enumerate(gw.spec.servers):
            port = server.port.number
            hosts = [h.rpartition("/")[2] for h in server.hosts]
            clashing: list[str] = []
            for other_e, other in gateways:
                if other_e.key == e.key or not _same_workloads(ctx, gw, other):
                    continue
                if any(
                    s.port.number == port
                    and any(
                        hosts_intersect(h, oh.rpartition("/")[2]) for h in hosts for oh in s.hosts
                    )
                    for s in other.spec.servers
                ):
                    clashing.append(_name(other_e))
            if clashing:
                yield e.message(
                    m.CONFLICTING_GATEWAYS,
                    ",".join(clashing),
                    selector_string(gw.spec.selector),
                    port,
                    ",".join(server.hosts),
                    path=f"spec.servers[{i}].port.number",
                )


def _name(e: Entry) -> str:
    return f"{e.namespace}/{e.name}"
