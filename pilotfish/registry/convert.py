"""Services and workloads from Kubernetes-shaped objects: ``Service``, ``Pod``, ``WorkloadEntry``.

Pure conversions from stored bodies (already validated) to registry types. A ``Service``
gets its VIP from ``spec.clusterIP`` when the user set one, else from the allocator callback.
A ``Pod`` is a workload when it reports ``status.podIP``; it is healthy when its ``Ready``
condition is ``True`` (or, lacking conditions, when its phase is ``Running`` or absent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pilotfish.api.mesh import (
    DEFAULT_DOMAIN_SUFFIX,
    EXPORT_TO_ANNOTATION,
    export_to_annotation,
    service_fqdn,
)
from pilotfish.api.workloads import locality_from_labels
from pilotfish.registry.types import Service, ServicePort, Workload, select_protocol

Allocate = Callable[[str], str]


def _owner_deployment(meta: dict[str, Any]) -> str:
    """The Deployment a pod belongs to (its controller owner), Istio's workload name."""
    for ref in meta.get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("kind") == "Deployment" and ref.get("name"):
            return str(ref["name"])
    return ""


def _meta(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("metadata") or {}


def _labels(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}


def _target(raw: Any) -> int | str | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, int):
        return raw
    s = str(raw)
    return int(s) if s.isdigit() else s


def service_from_k8s(
    body: dict[str, Any], allocate: Allocate, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> Service:
    meta = _meta(body)
    spec = body.get("spec") or {}
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    hostname = service_fqdn(name, namespace, domain_suffix)
    ports = tuple(
        ServicePort(
            name=str(p.get("name") or ""),
            port=int(p["port"]),
            protocol=select_protocol(p.get("name"), p.get("appProtocol")),
            target_port=_target(p.get("targetPort")),
        )
        for p in spec.get("ports") or []
        if str(p.get("protocol") or "TCP").upper() == "TCP"
    )
    cluster_ip = spec.get("clusterIP")
    vip = str(cluster_ip) if cluster_ip and cluster_ip != "None" else allocate(hostname)
    selector = spec.get("selector")
    annotations = meta.get("annotations") or {}
    export_to = export_to_annotation(annotations.get(EXPORT_TO_ANNOTATION))
    return Service(
        hostname=hostname,
        namespace=namespace,
        name=name,
        ports=ports,
        vip=vip,
        selector=_labels(selector) if selector is not None else None,
        source_kind="Service",
        source_name=name,
        export_to=export_to,
    )


def _pod_ready(status: dict[str, Any]) -> bool:
    conditions = status.get("conditions")
    if conditions:
        for c in conditions:
            if c.get("type") == "Ready":
                return str(c.get("status")) == "True"
    phase = status.get("phase")
    return phase in (None, "", "Running")


def workload_from_pod(body: dict[str, Any]) -> Workload | None:
    """A pod with an IP, or None when it has none yet (or has finished)."""
    meta = _meta(body)
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    ip = status.get("podIP")
    if not ip or status.get("phase") in ("Succeeded", "Failed"):
        return None
    named: dict[str, int] = {}
    for c in spec.get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") and p.get("containerPort"):
                named[str(p["name"])] = int(p["containerPort"])
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    annotations = meta.get("annotations") or {}
    return Workload(
        uid=f"Pod/{namespace}/{name}",
        name=name,
        namespace=namespace,
        address=str(ip),
        labels=_labels(meta.get("labels")),
        service_account=str(spec.get("serviceAccountName") or "default"),
        healthy=_pod_ready(status),
        locality=locality_from_labels(
            _labels(meta.get("labels")), str(annotations.get("pilotfish.io/locality") or "")
        ),
        named_ports=named,
        has_sidecar=str(annotations.get("sidecar.istio.io/status") or "") != "",
        workload_name=_owner_deployment(meta) or name,
    )


def workload_from_workload_entry(body: dict[str, Any]) -> Workload | None:
    """A WorkloadEntry; None when it has no address. Unhealthy when a ``Healthy`` condition
    says ``False`` (as Istio's health checking writes it)."""
    meta = _meta(body)
    spec = body.get("spec") or {}
    address = spec.get("address")
    if not address:
        return None
    healthy = True
    for c in (body.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Healthy":
            healthy = str(c.get("status")) == "True"
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    return Workload(
        uid=f"WorkloadEntry/{namespace}/{name}",
        name=name,
        namespace=namespace,
        address=str(address),
        labels=_labels(spec.get("labels")),
        service_account=str(spec.get("serviceAccount") or "default"),
        healthy=healthy,
        locality=locality_from_labels(_labels(spec.get("labels")), str(spec.get("locality") or "")),
        network=str(spec.get("network") or ""),
        weight=int(spec.get("weight") or 0),
        endpoint_ports={str(k): int(v) for k, v in (spec.get("ports") or {}).items()},
    )
