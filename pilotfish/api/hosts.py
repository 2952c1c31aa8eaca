"""Host names as Istio reads them: short-name resolution, wildcards and namespace-qualified hosts.

- A host without a dot is a short name resolved in the namespace of the rule that wrote it
  (``reviews`` in namespace ``default`` -> ``reviews.default.svc.cluster.local``); a host with
  a dot is taken as written (Istio does not expand ``reviews.default``).
- ``*`` matches every host; ``*.example.com`` matches ``a.example.com`` and
  ``a.b.example.com`` and the wildcard ``*.x.example.com``, not ``example.com``.
- Gateway server hosts may carry a namespace: ``ns/host``, ``./host`` (the Gateway's namespace),
  ``*/host`` (any); a host without one means ``*/host``.
- Gateway references (``gateways:`` of a VirtualService) are ``mesh``, ``name`` (the
  VirtualService's namespace) or ``ns/name``; they are normalized to ``mesh`` / ``ns/name``.
"""

from __future__ import annotations

from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, service_fqdn

MESH_GATEWAY = "mesh"


def resolve_host(host: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """Istio's ResolveShortnameToFQDN."""
    if not host or "." in host or host.startswith("*"):
        return host
    return service_fqdn(host, namespace, domain_suffix)


def host_matches(pattern: str, host: str) -> bool:
    """Does ``pattern`` (exact or wildcard) cover ``host`` (which may itself be a wildcard)?"""
    if pattern == "*" or pattern == host:
        return True
    if pattern.startswith("*"):
        suffix = pattern[1:]  # ".example.com"
        if host.startswith("*"):
            return host[1:].endswith(suffix)
        return host.endswith(suffix) and len(host) > len(suffix)
    return False


def hosts_intersect(a: str, b: str) -> bool:
    """True when some host is matched by both ``a`` and ``b``."""
    return host_matches(a, b) or host_matches(b, a)


def specificity(pattern: str) -> tuple[int, int]:
    """Sort key: exact hosts before wildcards, longer wildcards before shorter ones."""
    return (1 if pattern.startswith("*") else 0, -len(pattern))


def best_match(patterns: list[str], host: str) -> str | None:
    """The most specific of ``patterns`` that matches ``host``."""
    found = [p for p in patterns if host_matches(p, host)]
    return min(found, key=specificity) if found else None


def normalize_gateway(ref: str, namespace: str) -> str:
    """``mesh`` stays; ``name`` -> ``namespace/name``; ``ns/name`` stays."""
    if ref == MESH_GATEWAY or "/" in ref:
        return ref
    # Istio also accepts "name.namespace.svc.cluster.local"-style references; take the first
    # two labels as name and namespace.
    if "." in ref:
        parts = ref.split(".")
        return f"{parts[1]}/{parts[0]}"
    return f"{namespace}/{ref}"


def split_server_host(host: str, gateway_namespace: str) -> tuple[str, str]:
    """A Gateway server host as ``(namespace or '*', hostname)``."""
    if "/" in host:
        ns, _, name = host.partition("/")
        if ns == ".":
            ns = gateway_namespace
        return ns, name
    return "*", host
