"""The Config page's data and the config that applies to a graph node. Pure.

Analyzer messages come from :func:`pilotfish.config.analyze.analyze` (the same findings as
``pilotfish analyze -A``); host matching from :mod:`pilotfish.api.hosts`; proxy sync state is
the control plane's proxy status as ``pilotfish proxy-status`` shows it; a proxy's Envoy
config is what the control plane generates for it, summarised into tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pilotfish.api import kinds
from pilotfish.api.hosts import host_matches, resolve_host
from pilotfish.api.mesh import service_fqdn
from pilotfish.config.analyze import Input, Message, analyze, documentation_url

#: Kinds the Config page lists (Istio's config and the Services it refers to).
CONFIG_GROUPS = ("networking.istio.io", "security.istio.io", "telemetry.istio.io")
SHOWN_CORE_KINDS = ("Service",)


def shown(kind: str) -> bool:
    try:
        info = kinds.by_kind(kind)
    except Exception:
        return False
    return info.group in CONFIG_GROUPS or kind in SHOWN_CORE_KINDS


def message_json(msg: Message) -> dict[str, Any]:
    return {
        "code": msg.code,
        "level": msg.level.label,
        "message": msg.text,
        "field": msg.path or None,
        "resource": str(msg.resource),
        "documentationUrl": documentation_url(msg.code),
    }


def resources_with_messages(bodies: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every shown resource with its analyzer messages (analysis runs over all of ``bodies``,
    as references cross namespaces)."""
    messages = analyze([Input(dict(b)) for b in bodies])
    by_key: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for msg in messages:
        r = msg.resource
        by_key.setdefault((r.kind, r.namespace, r.name), []).append(message_json(msg))
    out = []
    for b in bodies:
        kind = str(b.get("kind", ""))
        if not shown(kind):
            continue
        meta = b.get("metadata") or {}
        key = (kind, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        out.append(
            {
                "kind": kind,
                "namespace": key[1],
                "name": key[2],
                "resourceVersion": meta.get("resourceVersion"),
                "messages": by_key.get(key, []),
                "body": b,
            }
        )
    out.sort(key=lambda r: (r["kind"], r["namespace"], r["name"]))
    return out


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    match = (selector or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def config_for(
    resources: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    service: str = "",
    labels: Mapping[str, str] | None = None,
) -> list[Mapping[str, Any]]:
    """The resources (from :func:`resources_with_messages`) that apply to a service and/or a
    workload: VirtualServices and DestinationRules whose hosts cover the service, policies
    (PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Sidecar, Telemetry)
    selecting the workload's labels in its namespace or the root namespace, and the Service."""
    fqdn = service_fqdn(service, namespace) if service else ""
    out = []
    for r in resources:
        body = r["body"]
        spec = body.get("spec") or {}
        own_ns = r["namespace"]
        kind = r["kind"]
        if kind == "VirtualService" and fqdn:
            hosts = [resolve_host(h, own_ns) for h in spec.get("hosts") or []]
            if any(host_matches(h, fqdn) for h in hosts):
                out.append(r)
        elif kind == "DestinationRule" and fqdn:
            if host_matches(resolve_host(str(spec.get("host", "")), own_ns), fqdn):
                out.append(r)
        elif kind == "Service":
            if service and own_ns == namespace and r["name"] == service:
                out.append(r)
        elif kind in (
            "PeerAuthentication",
            "AuthorizationPolicy",
            "RequestAuthentication",
            "Sidecar",
            "Telemetry",
        ):
            if own_ns not in (namespace, "istio-system"):
                continue
            selector = spec.get("selector") or spec.get("workloadSelector")
            if selector is None or (labels is not None and _selects(selector, labels)):
                out.append(r)
    return out


def subsets_of(resources: Iterable[Mapping[str, Any]], service: str, namespace: str) -> list[str]:
    """Subset names the DestinationRules for ``service`` define."""
    fqdn = service_fqdn(service, namespace)
    names: list[str] = []
    for r in resources:
        if r["kind"] != "DestinationRule":
            continue
        spec = r["body"].get("spec") or {}
        if host_matches(resolve_host(str(spec.get("host", "")), r["namespace"]), fqdn):
            names += [str(s.get("name")) for s in spec.get("subsets") or [] if s.get("name")]
    return list(dict.fromkeys(names))


def envoy_tables(config: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """A proxy's generated config (``clusters``, ``listeners``, ``routes``, ``endpoints``) as
    the rows ``pilotfish proxy-config`` prints."""
    clusters = []
    for c in config.get("clusters") or []:
        name = str(c.get("name", ""))
        parts = name.split("|")
        clusters.append(
            {
                "name": name,
                "fqdn": parts[3] if len(parts) == 4 else name,
                "port": parts[1] if len(parts) == 4 else "",
                "subset": parts[2] if len(parts) == 4 else "",
                "direction": parts[0].upper() if len(parts) == 4 else "",
                "type": c.get("type", "EDS" if "eds_cluster_config" in c else ""),
            }
        )
    listeners = []
    for listener in config.get("listeners") or []:
        sock = (listener.get("address") or {}).get("socket_address") or {}
        listeners.append(
            {
                "name": listener.get("name", ""),
                "address": sock.get("address", ""),
                "port": sock.get("port_value", ""),
                "filterChains": len(listener.get("filter_chains") or []),
            }
        )
    routes = []
    for route in config.get("routes") or []:
        for vh in route.get("virtual_hosts") or []:
            routes.append(
                {
                    "name": route.get("name", ""),
                    "virtualHost": vh.get("name", ""),
                    "domains": ", ".join(vh.get("domains") or [])[:200],
                    "routes": len(vh.get("routes") or []),
                }
            )
    endpoints = []
    for cla in config.get("endpoints") or []:
        for group in cla.get("endpoints") or []:
            for lb in group.get("lb_endpoints") or []:
                sock = ((lb.get("endpoint") or {}).get("address") or {}).get("socket_address", {})
                endpoints.append(
                    {
                        "cluster": cla.get("cluster_name", ""),
                        "endpoint": f"{sock.get('address', '')}:{sock.get('port_value', '')}",
                        "health": lb.get("health_status", "HEALTHY"),
                    }
                )
    return {
        "clusters": clusters,
        "listeners": listeners,
        "routes": routes,
        "endpoints": endpoints,
    }
