"""Host, gateway-reference and label-selector rules the analyzers share, as Istio reads them.

- A host without a dot is a short name resolved in the namespace of the resource that wrote it
  (``reviews`` in ``default`` -> ``reviews.default.svc.cluster.local``); others stay as written.
- ``*`` matches every host; ``*.example.com`` matches ``a.example.com`` (and the narrower
  wildcard ``*.a.example.com``), not ``example.com``.
- VirtualService gateway references are ``mesh``, ``name`` (the VirtualService's namespace),
  ``ns/name`` or ``name.ns.svc.<domain>``; they are normalized to ``mesh`` / ``ns/name``.
- Gateway server hosts may carry a namespace (``ns/host``, ``./host``, ``*/host``).
- Selectors print as Kubernetes prints a label set: ``app=reviews,version=v1`` (keys sorted).
"""

from __future__ import annotations

from collections.abc import Mapping

from pilotfish.api.hosts import (
    MESH_GATEWAY,
    host_matches,
    hosts_intersect,
    normalize_gateway,
    resolve_host,
    split_server_host,
)

__all__ = [
    "MESH_GATEWAY",
    "host_matches",
    "hosts_intersect",
    "labels_match",
    "namespace_pattern_matches",
    "normalize_gateway",
    "resolve_host",
    "selector_string",
    "split_server_host",
]


def selector_string(labels: Mapping[str, str]) -> str:
    """``app=reviews,version=v1``: keys sorted, as Kubernetes prints a label set."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every ``key=value`` of ``selector`` is in ``labels`` (an empty selector matches all)."""
    return all(labels.get(k) == v for k, v in selector.items())


def namespace_pattern_matches(pattern: str, namespace: str) -> bool:
    """AuthorizationPolicy namespace patterns: ``*``, ``prefix*``, ``*suffix`` or exact."""
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return namespace.endswith(pattern[1:])
    if pattern.endswith("*"):
        return namespace.startswith(pattern[:-1])
    return pattern.lower() == namespace.lower()
