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

MESH_GATEWAY = "mesh"


def resolve_host(host: str, namespace: str, domain_suffix: str = "cluster.local") -> str:
    """The FQDN of ``host`` as written in ``namespace`` (short names expanded)."""
    if not host or "." in host or host.startswith("*"):
        return host
    return f"{host}.{namespace}.svc.{domain_suffix}"


def host_matches(pattern: str, host: str) -> bool:
    """Does ``pattern`` (exact or wildcard) cover ``host`` (which may itself be a wildcard)?"""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*"):
        suffix = pattern[1:]
        if host.startswith("*"):
            return host[1:].endswith(suffix)
        return host.endswith(suffix) and len(host) > len(suffix)
    return False


def hosts_intersect(a: str, b: str) -> bool:
    """Some host is matched by both ``a`` and ``b``."""
    return host_matches(a, b) or host_matches(b, a)


def normalize_gateway(ref: str, namespace: str) -> str:
    """``mesh`` stays; ``name`` -> ``namespace/name``; ``name.ns.svc...`` -> ``ns/name``."""
    if ref == MESH_GATEWAY or "/" in ref:
        return ref
    if "." in ref:
        parts = ref.split(".")
        return f"{parts[1]}/{parts[0]}"
    return f"{namespace}/{ref}"


def split_server_host(host: str, gateway_namespace: str) -> tuple[str, str]:
    """A Gateway server host as ``(namespace or '*', hostname)``."""
    if "/" in host:
        ns, _, name = host.partition("/")
        return (gateway_namespace if ns == "." else ns), name
    return "*", host


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
