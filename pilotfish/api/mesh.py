"""Istio's mesh-wide names and numbers, in one place: well-known ports, the default DNS
domain suffix and trust domain, the service FQDN and ``exportTo`` visibility.

Everything here is a plain constant or a pure function with no imports, so the agent, the CLI
and the control plane share it without loading the models.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Kubernetes' default DNS domain; Istio's default trust domain has the same value.
DEFAULT_DOMAIN_SUFFIX = "cluster.local"
DEFAULT_TRUST_DOMAIN = "cluster.local"

# Istio's well-known ports.
ADMIN_PORT = 15000
OUTBOUND_CAPTURE_PORT = 15001
INBOUND_CAPTURE_PORT = 15006
#: xDS and the CA (gRPC, TLS), as istiod's 15012.
XDS_PORT = 15012
#: The control plane's HTTP API (istiod serves monitoring here; Pilotfish serves its API).
API_PORT = 15014
AGENT_PORT = 15020
READINESS_PORT = 15021
#: The default xDS address of an agent and of the control plane's listener.
DEFAULT_XDS_ADDRESS = f"127.0.0.1:{XDS_PORT}"
#: The default address of the control plane's HTTP API.
DEFAULT_API_ADDRESS = f"127.0.0.1:{API_PORT}"

#: A gateway's default port map (Gateway server port -> port bound), as the Istio ingress
#: gateway's Service maps them: 80 -> 8080 and 443 -> 8443.
GATEWAY_PORTS: dict[int, int] = {80: 8080, 443: 8443}

#: The annotation that sets a Kubernetes Service's exportTo.
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def service_fqdn(name: str, namespace: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
    """A Kubernetes Service's host name: ``reviews.default.svc.cluster.local``."""
    return f"{name}.{namespace}.svc.{domain_suffix}"


def export_to(values: Iterable[object] | None) -> tuple[str, ...]:
    """An ``exportTo`` list as written (a missing or empty list means ``*``)."""
    out = tuple(str(e).strip() for e in values or ())
    return out or ("*",)


def export_to_annotation(value: object) -> tuple[str, ...]:
    """A Service's ``networking.istio.io/exportTo`` annotation (comma separated)."""
    return export_to(str(value).split(",") if value else None)


def visible(exported: Iterable[str], owner_namespace: str, from_namespace: str) -> bool:
    """Is config of ``owner_namespace`` exported to ``exported`` seen from ``from_namespace``?

    ``*`` is every namespace, ``.`` the owner's own, anything else a namespace by name; an
    empty list means ``*``.
    """
    seen = False
    for e in exported:
        seen = True
        if e == "*" or e == from_namespace or (e == "." and from_namespace == owner_namespace):
            return True
    return not seen
