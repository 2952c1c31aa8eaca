"""``validate``: schema, metadata and Istio semantics of one resource body, all problems at once.

Steps: the kind must be served (UnknownKindError otherwise); ``metadata`` is checked the way
Kubernetes checks it (name present and well formed, labels); the body is normalized (namespace
filled for namespaced kinds, removed for cluster-scoped ones) and parsed into its typed model
(unknown fields, wrong types, unsupported enum values); then the kind's semantic validator
runs. Every problem found is reported in one ValidationError, each with its field path.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pydantic
from pydantic import BaseModel

from pilotfish.api.kinds import KindInfo, for_api_version
from pilotfish.api.models import MODELS, field_errors
from pilotfish.api.objects import ResourceKey
from pilotfish.config.loader import MAX_DEPTH, normalize, too_deep
from pilotfish.config.validation import (
    canary,
    coverage,
    destinationrule,
    envoyfilter,
    gateway,
    kube,
    meshconfig,
    security,
    serviceentry,
    sidecar,
    telemetry,
    virtualservice,
)
from pilotfish.config.validation.common import (
    Errors,
    check_labels,
    name_error,
    qualified_name_error,
)
from pilotfish.errors import FieldError, Source, ValidationError

#: A semantic validator: the typed object, the collector, the object's namespace.
Validator = Callable[[Any, Errors, str], None]

VALIDATORS: dict[str, Validator] = {
    "VirtualService": virtualservice.validate_virtual_service,
    "DestinationRule": destinationrule.validate_destination_rule,
    "Gateway": gateway.validate_gateway,
    "ServiceEntry": serviceentry.validate_service_entry,
    "WorkloadEntry": serviceentry.validate_workload_entry,
    "WorkloadGroup": serviceentry.validate_workload_group,
    "Sidecar": sidecar.validate_sidecar,
    "EnvoyFilter": envoyfilter.validate_envoy_filter,
    "PeerAuthentication": security.validate_peer_authentication,
    "AuthorizationPolicy": security.validate_authorization_policy,
    "RequestAuthentication": security.validate_request_authentication,
    "Telemetry": telemetry.validate_telemetry,
    "IstioOperator": meshconfig.validate_istio_operator,
    "Namespace": kube.validate_namespace,
    "Service": kube.validate_service,
    "ServiceAccount": kube.validate_nothing,
    "Secret": kube.validate_secret,
    "Deployment": kube.validate_deployment,
    "Pod": kube.validate_pod,
    "Event": kube.validate_event,
    "Canary": canary.validate_canary,
    "MetricTemplate": canary.validate_metric_template,
}
assert set(VALIDATORS) == set(MODELS), "every kind needs a validator"

#: How each kind's ``metadata.name`` is checked (Kubernetes' and Istio's rules).
NAME_RULES: dict[str, str] = {
    "Namespace": "label",
    "Service": "dns1035",
    "Gateway": "label",
}


@dataclass(frozen=True)
class Validated:
    """A valid resource: its kind, typed model and normalized body (a fresh dict)."""

    info: KindInfo
    obj: BaseModel
    body: dict[str, Any]
    #: Problems Istio reports as warnings, and fields Pilotfish does not apply; the resource
    #: is accepted.
    warnings: tuple[FieldError, ...] = field(default=())
    #: The part of ``warnings`` that names fields the field table marks as warned
    #: (:func:`coverage.unapplied`): Pilotfish's own, not Istio's (``analyze`` leaves them out).
    unapplied: tuple[FieldError, ...] = field(default=())


def _check_metadata(info: KindInfo, meta: Any, errs: Errors) -> None:
    if not isinstance(meta, dict):
        errs.add("metadata", "Required value: metadata is required")
        return
    name = meta.get("name")
    if name is None or name == "":
        errs.add("metadata.name", "Required value: name or generateName is required")
    elif isinstance(name, str):
        errs.add("metadata.name", name_error(name, NAME_RULES.get(info.kind, "subdomain")))
    namespace = meta.get("namespace")
    if info.namespaced and isinstance(namespace, str) and namespace:
        errs.add("metadata.namespace", name_error(namespace, "label"))
    labels = meta.get("labels")
    if isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values()):
        check_labels(errs, "metadata.labels", labels)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        for key in annotations:
            errs.add(f"metadata.annotations[{key}]", qualified_name_error(str(key)))


def operator_defaults(body: dict[str, Any]) -> dict[str, Any]:
    """An IstioOperator as istioctl reads it: written without a name (the tutorials do), it is
    the ``installed-state`` in ``istio-system``. Pure."""
    meta = body.get("metadata")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.setdefault("name", "installed-state")
    meta.setdefault("namespace", "istio-system")
    return {**body, "metadata": meta}


def normalized_body(
    info: KindInfo, body: dict[str, Any], default_namespace: str | None
) -> dict[str, Any]:
    """A copy of ``body`` with the namespace filled in (namespaced) or removed (cluster-scoped)."""
    out: dict[str, Any] = normalize(copy.deepcopy(body))
    meta = out.get("metadata")
    if not isinstance(meta, dict):
        return out
    if info.namespaced:
        if not meta.get("namespace"):
            meta["namespace"] = default_namespace or "default"
    else:
        meta.pop("namespace", None)
    return out


def validate(
    body: dict[str, Any],
    *,
    source: Source | None = None,
    default_namespace: str | None = None,
) -> Validated:
    """Check ``body`` completely; raise UnknownKindError or ValidationError (every problem)."""
    if not isinstance(body, dict):
        raise ValidationError(
            ResourceKey.of("<unknown>"), [FieldError("", "must be a mapping")], source
        )
    deep = too_deep(body)
    if deep is not None:
        raise ValidationError(
            _ref(body, None, default_namespace),
            [FieldError(deep, f"Invalid value: nested deeper than {MAX_DEPTH} levels")],
            source,
        )
    kind, api_version = body.get("kind"), body.get("apiVersion")
    missing = []
    if not isinstance(kind, str) or not kind:
        missing.append(FieldError("kind", "Required value: kind is required"))
    if not isinstance(api_version, str) or not api_version:
        missing.append(FieldError("apiVersion", "Required value: apiVersion is required"))
    if missing:
        raise ValidationError(_ref(body, None, default_namespace), missing, source)
    assert isinstance(kind, str) and isinstance(api_version, str)
    info = for_api_version(api_version, kind)
    if info.kind == "IstioOperator":
        body = operator_defaults(body)

    errs = Errors()
    _check_metadata(info, body.get("metadata"), errs)
    normalized = normalized_body(info, body, default_namespace)
    ref = _ref(normalized, info, default_namespace)
    model = MODELS[info.kind]
    try:
        obj = model.model_validate(normalized)
    except pydantic.ValidationError as exc:
        reported = {e.path for e in errs.items}
        for e in field_errors(exc, model):
            if e.path not in reported:
                errs.items.append(e)
        raise ValidationError(ref, errs.items, source) from None
    if errs:
        raise ValidationError(ref, errs.items, source)
    namespace = (normalized.get("metadata") or {}).get("namespace") or ""
    VALIDATORS[info.kind](obj, errs, namespace)
    if errs:
        raise ValidationError(ref, errs.items, source)
    unapplied = coverage.unapplied(info.kind, obj, frozenset(w.path for w in errs.warnings))
    return Validated(info, obj, normalized, (*errs.warnings, *unapplied), tuple(unapplied))


def _ref(body: dict[str, Any], info: KindInfo | None, default_ns: str | None) -> ResourceKey:
    meta = body.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    ns = meta.get("namespace")
    if info is not None and not info.namespaced:
        ns = None
    elif not ns and info is not None:
        ns = default_ns or "default"
    kind = info.kind if info is not None else (body.get("kind") or "<unknown>")
    return ResourceKey.of(
        str(kind),
        ns if isinstance(ns, str) else None,
        name if isinstance(name, str) else None,
    )
