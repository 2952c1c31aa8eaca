"""ServiceEntry analyzers: TCP ports without an address, and hosts whose port two entries give
different protocols.

- IST0134: a ServiceEntry without ``addresses`` with a port whose protocol is unset or TCP,
  and a host that gets no VIP: Pilotfish allocates one for every non-wildcard host (as
  Istio's DNS auto-allocation does), so only wildcard hosts are reported; without
  auto-allocation (``AnalysisSettings.auto_allocate_addresses=False``) every host is. Such a
  port is then matched by port alone, whatever the host.
- IST0177: ServiceEntries visible from one namespace define the same host and port with
  different protocols; only one protocol can be used for them.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.mesh import export_to, visible
from pilotfish.api.networking import ServiceEntry
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.messages import Message
from pilotfish.config.analyze.names import resolve_host

__all__ = ["analyze_conflicting_protocols", "analyze_protocol_addresses"]

KIND = "ServiceEntry"


def analyze_protocol_addresses(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0134 for TCP ports of entries whose hosts get no address."""
    auto = ctx.settings.auto_allocate_addresses
    for e, se in ctx.of_kind(KIND, ServiceEntry):
        if se.spec.addresses:
            continue
        if auto and not any("*" in h for h in se.spec.hosts):
            continue
        for i, port in enumerate(se.spec.ports):
            if (port.protocol or "").upper() in ("", "TCP"):
                yield e.message(m.SERVICE_ENTRY_ADDRESSES_REQUIRED, path=f"spec.ports[{i}]")


def analyze_conflicting_protocols(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0177 for one host and port with different protocols in several entries."""
    entries = list(ctx.of_kind(KIND, ServiceEntry))
    namespaces = sorted(ctx.namespaces)
    claims: dict[tuple[str, int], list[tuple[Entry, str, tuple[str, ...]]]] = {}
    for e, se in entries:
        exported = export_to(se.spec.exportTo)
        for h in dict.fromkeys(se.spec.hosts):
            host = resolve_host(h, e.namespace, ctx.settings.domain_suffix)
            for p in se.spec.ports:
                proto = (p.protocol or "TCP").upper()
                claims.setdefault((host, p.number), []).append((e, proto, exported))
    reported: set[tuple[str, int, str]] = set()
    for (host, port), group in sorted(claims.items(), key=lambda kv: kv[0]):
        if len({proto for _, proto, _ in group}) < 2:
            continue
        for ns in namespaces:
            seen = [(e, proto) for e, proto, exp in group if visible(exp, e.namespace, ns)]
            if len({proto for _, proto in seen}) < 2:
                continue
            names = ", ".join(sorted({f"{e.namespace}/{e.name}" for e, _ in seen}))
            protos = ", ".join(sorted({proto for _, proto in seen}))
            for e, _ in seen:
                key = (f"{e.namespace}/{e.name}", port, host)
                if key in reported:
                    continue
                reported.add(key)
                yield e.message(
                    m.CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                    names,
                    host,
                    port,
                    protos,
                    path="spec.ports",
                )
