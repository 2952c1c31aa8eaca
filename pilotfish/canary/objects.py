"""The objects a Canary owns, as Flagger generates them for Istio. Pure functions.

For a Canary ``podinfo`` targeting Deployment ``podinfo`` (pods labelled ``app: podinfo``):

- Deployment ``podinfo-primary``: the target's template, its selector label rewritten to
  ``app: podinfo-primary`` (the stable version; the target itself becomes the canary);
- Services ``podinfo`` (the apex every client calls) and ``podinfo-primary``, selecting the
  primary's pods, and ``podinfo-canary`` selecting the target's;
- DestinationRules ``podinfo-primary`` and ``podinfo-canary`` with ``service.trafficPolicy``;
- VirtualService ``podinfo`` (hosts: the apex and ``service.hosts``; gateways as written plus
  ``mesh``) whose route splits between the two hosts by weight, or, for A/B testing, sends
  requests matching ``analysis.match`` to the canary and the rest to the primary.

Every generated object carries an owner reference to the Canary and, for the routing objects,
the hash of the spec Pilotfish wrote (``GENERATED_ANNOTATION``): a spec that no longer has that
hash was edited by someone else, and the controller reports it instead of overwriting it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pilotfish.api.flagger import Canary
from pilotfish.api.kinds import by_kind

#: On generated VirtualServices and DestinationRules: the hash of the spec last written.
GENERATED_ANNOTATION = "pilotfish.io/canary-spec-hash"
#: The selector labels Flagger rewrites for the primary, in its order of preference.
SELECTOR_LABELS = ("app.kubernetes.io/name", "app", "name")


def spec_hash(spec: Any) -> str:
    """A short stable hash of a JSON value (a spec or a pod template)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def primary_name(canary: Canary) -> str:
    return f"{canary.spec.targetRef.name}-primary"


def canary_service_name(canary: Canary) -> str:
    return f"{canary.apex_name()}-canary"


def primary_service_name(canary: Canary) -> str:
    return f"{canary.apex_name()}-primary"


def owner_reference(canary: Canary) -> dict[str, Any]:
    return {
        "apiVersion": canary.apiVersion,
        "kind": "Canary",
        "name": canary.metadata.name,
        "uid": canary.metadata.uid or "",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_by(body: Mapping[str, Any], canary: Canary) -> bool:
    """True when ``body`` carries the owner reference of ``canary`` (by name and kind)."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Canary" and ref.get("name") == canary.metadata.name:
            return True
    return False


def selector_label(target: Mapping[str, Any]) -> tuple[str, str] | None:
    """The target's selector label Flagger rewrites (``app: podinfo``), or None."""
    labels = ((target.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    for key in SELECTOR_LABELS:
        if key in labels:
            return key, str(labels[key])
    return None


def _meta(canary: Canary, kind: str, name: str, extra: Mapping[str, Any] | None = None) -> dict:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": canary.metadata.namespace,
        "ownerReferences": [owner_reference(canary)],
    }
    if extra:
        if extra.get("labels"):
            meta["labels"] = dict(extra["labels"])
        if extra.get("annotations"):
            meta["annotations"] = dict(extra["annotations"])
    return {"apiVersion": by_kind(kind).api_version, "kind": kind, "metadata": meta}


def primary_template(target: Mapping[str, Any], label: tuple[str, str]) -> dict[str, Any]:
    """The target's pod template with the selector label rewritten for the primary."""
    key, value = label
    template = copy.deepcopy((target.get("spec") or {}).get("template") or {})
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), key: f"{value}-primary"}
    return template


def primary_deployment(
    canary: Canary, target: Mapping[str, Any], label: tuple[str, str], replicas: int
) -> dict[str, Any]:
    """Deployment ``NAME-primary`` running the target's template."""
    key, value = label
    body = _meta(canary, "Deployment", primary_name(canary))
    tspec = target.get("spec") or {}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {key: f"{value}-primary"}},
        "template": primary_template(target, label),
    }
    for field in ("strategy", "minReadySeconds", "revisionHistoryLimit"):
        if field in tspec:
            spec[field] = copy.deepcopy(tspec[field])
    body["spec"] = spec
    labels = (target.get("metadata") or {}).get("labels") or {}
    if labels:
        body["metadata"]["labels"] = {**labels, key: f"{value}-primary"}
    return body


def _service(
    canary: Canary, name: str, selector: dict[str, str], extra: Any | None
) -> dict[str, Any]:
    svc = canary.spec.service
    body = _meta(canary, "Service", name, extra.to_dict() if extra is not None else None)
    port: dict[str, Any] = {
        "name": svc.portName or "http",
        "port": svc.port,
        "targetPort": svc.targetPort if svc.targetPort is not None else svc.port,
        "protocol": "TCP",
    }
    if svc.appProtocol:
        port["appProtocol"] = svc.appProtocol
    body["spec"] = {"type": "ClusterIP", "selector": selector, "ports": [port]}
    return body


def services(canary: Canary, label: tuple[str, str]) -> list[dict[str, Any]]:
    """The apex, primary and canary Services, in that order."""
    key, value = label
    primary = {key: f"{value}-primary"}
    svc = canary.spec.service
    return [
        _service(canary, canary.apex_name(), primary, svc.apex),
        _service(canary, primary_service_name(canary), primary, svc.primary),
        _service(canary, canary_service_name(canary), {key: value}, svc.canary),
    ]


def _annotate(body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"].setdefault("annotations", {})[GENERATED_ANNOTATION] = spec_hash(body["spec"])
    return body


def destination_rules(canary: Canary) -> list[dict[str, Any]]:
    """DestinationRules for the primary and canary hosts (``service.trafficPolicy``)."""
    out = []
    policy = canary.spec.service.trafficPolicy
    for host in (primary_service_name(canary), canary_service_name(canary)):
        body = _meta(canary, "DestinationRule", host)
        body["spec"] = {"host": host}
        if policy is not None:
            body["spec"]["trafficPolicy"] = policy.to_dict()
        out.append(_annotate(body))
    return out


def _destinations(canary: Canary, primary: int, canary_weight: int) -> list[dict[str, Any]]:
    port = {"number": canary.spec.service.port}
    return [
        {"destination": {"host": primary_service_name(canary), "port": port}, "weight": primary},
        {
            "destination": {"host": canary_service_name(canary), "port": port},
            "weight": canary_weight,
        },
    ]


def _route(canary: Canary, name: str, route: list[dict[str, Any]]) -> dict[str, Any]:
    svc = canary.spec.service
    http: dict[str, Any] = {"name": name}
    if svc.match:
        http["match"] = [m.to_dict() for m in svc.match]
    if svc.rewrite is not None:
        http["rewrite"] = svc.rewrite.to_dict()
    if svc.timeout is not None:
        http["timeout"] = str(svc.timeout)
    if svc.retries is not None:
        http["retries"] = svc.retries.to_dict()
    if svc.headers is not None:
        http["headers"] = svc.headers.to_dict()
    if svc.corsPolicy is not None:
        http["corsPolicy"] = svc.corsPolicy.to_dict()
    http["route"] = route
    return http


def virtual_service(canary: Canary, weight: int, ab_active: bool = False) -> dict[str, Any]:
    """VirtualService ``NAME``: ``weight`` percent to the canary (weighted canary), or, with
    ``ab_active``, requests matching ``analysis.match`` to the canary (A/B testing), or with
    ``analysis.mirror`` every request to the primary and a copy to the canary."""
    svc = canary.spec.service
    analysis = canary.spec.the_analysis
    body = _meta(canary, "VirtualService", canary.apex_name())
    hosts = [canary.apex_name(), *(h for h in svc.hosts if h != canary.apex_name())]
    spec: dict[str, Any] = {"hosts": hosts}
    if svc.gateways:
        spec["gateways"] = [*svc.gateways, *([] if "mesh" in svc.gateways else ["mesh"])]
    http: list[dict[str, Any]] = []
    if ab_active and analysis.match and not analysis.mirror:
        for i, m in enumerate(analysis.match):
            route = _route(canary, f"{canary.apex_name()}-ab-{i}", _destinations(canary, 0, 100))
            merged = [{**s.to_dict(), **m.to_dict()} for s in svc.match] or [m.to_dict()]
            route["match"] = merged
            http.append(route)
    main = _route(canary, canary.apex_name(), _destinations(canary, 100 - weight, weight))
    if ab_active and analysis.mirror:
        main["mirror"] = {
            "host": canary_service_name(canary),
            "port": {"number": svc.port},
        }
    http.append(main)
    spec["http"] = http
    body["spec"] = spec
    return _annotate(body)


def edited(body: Mapping[str, Any]) -> bool:
    """True when a generated object's spec is no longer the one Pilotfish wrote."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    return annotations.get(GENERATED_ANNOTATION) != spec_hash(body.get("spec"))


def canary_weight_of(vs: Mapping[str, Any], canary: Canary) -> int:
    """The canary weight routed by a generated VirtualService's main (last) route."""
    routes = ((vs.get("spec") or {}).get("http") or [{}])[-1].get("route") or []
    host = canary_service_name(canary)
    return sum(int(r.get("weight") or 0) for r in routes if r["destination"]["host"] == host)
