"""Services and workloads from ``ServiceEntry`` objects.

Each host of an entry is one ``Service`` (hostname as written: ``api.example.com`` or a
wildcard ``*.example.com``), sharing the entry's ports, resolution, location and exportTo.
The VIP is the entry's first plain address (not a CIDR) when it has one; otherwise
non-wildcard hosts get an allocated VIP so that TCP ports can be captured by address too
(Istio does the same with DNS auto-allocation). The API server writes those VIPs into the
entry's ``status.addresses`` at apply (as Istio's allocation controller does); they are read
back here, so a host keeps its VIP across control-plane restarts. Inline ``endpoints``
become workloads that belong to this entry only; ``workloadSelector`` selects pods and
WorkloadEntries of the entry's namespace, like a Kubernetes selector. ``subjectAltNames``
are kept on each host's ``Service``: a client doing mesh mTLS to the entry's endpoints accepts
them besides the endpoints' service accounts (an inline endpoint without ``serviceAccount``
adds none), as Istio merges them.
"""

from __future__ import annotations

from typing import Any

from pilotfish.api.mesh import export_to
from pilotfish.registry.convert import Allocate
from pilotfish.registry.types import Service, ServicePort, Workload, select_protocol


def _ports(spec: dict[str, Any]) -> tuple[ServicePort, ...]:
    out = []
    for p in spec.get("ports") or []:
        name = str(p.get("name") or "")
        proto = p.get("protocol") or name
        out.append(
            ServicePort(
                name=name,
                port=int(p["number"]),
                protocol=select_protocol(str(proto)),
                target_port=int(p["targetPort"]) if p.get("targetPort") else None,
            )
        )
    return tuple(out)


def status_addresses(body: dict[str, Any]) -> dict[str, str]:
    """The VIPs the API server wrote in ``status.addresses`` (host -> address)."""
    out = {}
    for a in (body.get("status") or {}).get("addresses") or []:
        if isinstance(a, dict) and a.get("host") and a.get("value"):
            out[str(a["host"])] = str(a["value"])
    return out


def services_from_service_entry(body: dict[str, Any], allocate: Allocate) -> list[Service]:
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    ports = _ports(spec)
    addresses = tuple(str(a) for a in spec.get("addresses") or [])
    plain = [a for a in addresses if "/" not in a or a.endswith("/32")]
    resolution = str(spec.get("resolution") or "NONE")
    external = str(spec.get("location") or "MESH_EXTERNAL") == "MESH_EXTERNAL"
    selector = (spec.get("workloadSelector") or {}).get("labels")
    exported = export_to(spec.get("exportTo"))
    assigned = status_addresses(body)
    sans = tuple(str(s) for s in spec.get("subjectAltNames") or [])
    out = []
    for host in spec.get("hosts") or []:
        host = str(host)
        if plain:
            vip: str | None = plain[0].removesuffix("/32")
        elif host.startswith("*"):
            vip = None
        else:
            vip = assigned.get(host) or allocate(host)
        out.append(
            Service(
                hostname=host,
                namespace=namespace,
                name=host,
                ports=ports,
                vip=vip,
                selector={str(k): str(v) for k, v in selector.items()} if selector else None,
                resolution=resolution,
                mesh_external=external,
                source_kind="ServiceEntry",
                source_name=name,
                export_to=exported,
                addresses=addresses,
                subject_alt_names=sans,
            )
        )
    return out


def workloads_from_service_entry(body: dict[str, Any]) -> list[Workload]:
    """The inline ``endpoints`` of an entry (uids ``ServiceEntry/ns/name/i``)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    out = []
    for i, ep in enumerate(spec.get("endpoints") or []):
        address = ep.get("address")
        if not address:
            continue
        out.append(
            Workload(
                uid=f"ServiceEntry/{namespace}/{name}/{i}",
                name=f"{name}-{i}",
                namespace=namespace,
                address=str(address),
                labels={str(k): str(v) for k, v in (ep.get("labels") or {}).items()},
                # No account, no identity to verify (Istio leaves it empty too).
                service_account=str(ep.get("serviceAccount") or ""),
                locality=str(ep.get("locality") or ""),
                network=str(ep.get("network") or ""),
                weight=int(ep.get("weight") or 0),
                endpoint_ports={str(k): int(v) for k, v in (ep.get("ports") or {}).items()},
            )
        )
    return out
