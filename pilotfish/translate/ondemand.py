"""On-demand clusters: a sidecar holds the clusters of the HTTP services it calls, not the mesh's.

With the mesh config's ``onDemandClusters`` (Pilotfish's own setting, off by default), a
sidecar's outbound HTTP connection managers carry Envoy's ``envoy.filters.http.on_demand``
filter with on-demand CDS over ADS, and the control plane marks the clusters only those
routes use as *on demand*: the xDS server leaves them out of the proxy's wildcard CDS set and
sends one when the proxy asks for it by name (Delta xDS only; a SotW stream gets them all).
The first request to such a cluster waits while Envoy fetches it (and its endpoints), then is
routed as any other, with every routing rule of its route (weights, subsets, matches).

A cluster stays *eager* (always sent) when something else than an HTTP route may use it: a
listener names it (TCP and TLS services, ext_authz and telemetry providers, EnvoyFilter
patches), or it is not an outbound service cluster (inbound, passthrough, black hole).
Routes name clusters Envoy may lack: route configs are generated with ``validate_clusters``
off, as they always are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from google.protobuf.message import Message

from pilotfish.model.proxy import Proxy
from pilotfish.model.push_context import PushContext

#: A cluster name as it appears in serialized listeners (the longest match is tried first).
_OUTBOUND_REF = re.compile(rb"outbound\|\d+\|[^|\x00-\x20]*\|[A-Za-z0-9.\-*_]+")
_OUTBOUND_PREFIX = "outbound|"


def enabled(push: PushContext, proxy: Proxy) -> bool:
    """Whether ``proxy`` gets its outbound HTTP clusters on demand."""
    return bool(push.mesh_config.onDemandClusters) and not proxy.is_router


def referenced(listeners: Iterable[Message], names: frozenset[str]) -> set[str]:
    """The names of ``names`` some listener refers to (found in their serialized bytes)."""
    out: set[str] = set()
    for listener in listeners:
        blob = listener.SerializeToString()
        if b"outbound|" not in blob:
            continue
        for match in _OUTBOUND_REF.finditer(blob):
            text = match.group().decode("ascii", "replace")
            # The bytes after a name may look like host characters: try the longest first.
            for end in range(len(text), len(_OUTBOUND_PREFIX), -1):
                if text[:end] in names:
                    out.add(text[:end])
                    break
    return out


def on_demand_clusters(
    clusters: Mapping[str, Message], listeners: Iterable[Message]
) -> frozenset[str]:
    """The outbound clusters of ``clusters`` no listener refers to: HTTP routes alone use
    them, so the proxy can fetch each when it first routes to it."""
    outbound = frozenset(n for n in clusters if n.startswith(_OUTBOUND_PREFIX))
    if not outbound:
        return outbound
    return outbound - referenced(listeners, outbound)


__all__ = ["enabled", "on_demand_clusters", "referenced"]
