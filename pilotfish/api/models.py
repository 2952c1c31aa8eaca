"""The kind -> model table and typed parsing, with pydantic errors turned into field paths.

``MODELS`` maps every kind of :mod:`pilotfish.api.kinds` to its top-level model. ``parse``
checks a body against its kind's schema only (no Istio semantics; that is
:mod:`pilotfish.config.validation`) and raises :class:`pilotfish.errors.ValidationError` with
one :class:`~pilotfish.errors.FieldError` per problem, its path written as users read it:
``spec.http[0].route[1].weight``, map keys in brackets (``metadata.labels[app]``).
"""

from __future__ import annotations

import types
import typing
from typing import Any

import pydantic
from pydantic import BaseModel

from pilotfish.api import core, flagger, meshconfig, networking, security, telemetry, workloads
from pilotfish.api.destinationrule import DestinationRule
from pilotfish.api.kinds import KINDS, by_kind, for_api_version
from pilotfish.api.objects import ResourceKey
from pilotfish.api.virtualservice import VirtualService
from pilotfish.errors import FieldError, UnknownKindError, ValidationError

MODELS: dict[str, type[BaseModel]] = {
    "VirtualService": VirtualService,
    "DestinationRule": DestinationRule,
    "Gateway": networking.Gateway,
    "ServiceEntry": networking.ServiceEntry,
    "WorkloadEntry": networking.WorkloadEntry,
    "WorkloadGroup": networking.WorkloadGroup,
    "Sidecar": networking.Sidecar,
    "EnvoyFilter": networking.EnvoyFilter,
    "PeerAuthentication": security.PeerAuthentication,
    "AuthorizationPolicy": security.AuthorizationPolicy,
    "RequestAuthentication": security.RequestAuthentication,
    "Telemetry": telemetry.Telemetry,
    "IstioOperator": meshconfig.IstioOperator,
    "Namespace": core.Namespace,
    "Service": core.Service,
    "ServiceAccount": core.ServiceAccount,
    "Secret": core.Secret,
    "Deployment": workloads.Deployment,
    "Pod": workloads.Pod,
    "Event": core.Event,
    "Canary": flagger.Canary,
    "MetricTemplate": flagger.MetricTemplate,
}
assert set(MODELS) == {k.kind for k in KINDS}, "every kind needs a model"


def resource_ref(body: Any, default_namespace: str | None = None) -> ResourceKey:
    """``Kind namespace/name`` of a (possibly malformed) body, for messages."""
    if not isinstance(body, dict):
        return ResourceKey.of("<unknown>")
    meta = body.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name")
    ns = meta.get("namespace") or default_namespace
    kind = body.get("kind")
    return ResourceKey.of(
        kind if isinstance(kind, str) and kind else "<unknown>",
        ns if isinstance(ns, str) else None,
        name if isinstance(name, str) else None,
    )


def parse(body: dict[str, Any]) -> BaseModel:
    """The typed model of ``body`` (schema only: field names, types, enums).

    Raises UnknownKindError for an apiVersion/kind not served, ValidationError otherwise.
    """
    if not isinstance(body, dict):
        raise ValidationError(ResourceKey.of("<unknown>"), [FieldError("", "must be a mapping")])
    kind = body.get("kind")
    api_version = body.get("apiVersion")
    errors = []
    if not isinstance(kind, str) or not kind:
        errors.append(FieldError("kind", "Required value: kind is required"))
    if not isinstance(api_version, str) or not api_version:
        errors.append(FieldError("apiVersion", "Required value: apiVersion is required"))
    if errors:
        raise ValidationError(resource_ref(body), errors)
    assert isinstance(kind, str) and isinstance(api_version, str)
    for_api_version(api_version, kind)
    return parse_as(MODELS[kind], body)


def parse_as(model: type[BaseModel], body: dict[str, Any]) -> BaseModel:
    """Validate ``body`` as ``model``; pydantic errors become ValidationError with field paths."""
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        raise ValidationError(resource_ref(body), field_errors(exc, model)) from None


def model_for(kind: str) -> type[BaseModel]:
    """The model class of ``kind`` (UnknownKindError when not served)."""
    try:
        return MODELS[kind]
    except KeyError:
        by_kind(kind)  # raises with the standard message
        raise UnknownKindError(kind) from None


# --- pydantic errors -> field paths ----------------------------------------------------------

_TYPE_NAMES = {
    "int": "integer",
    "float": "number",
    "str": "string",
    "bool": "boolean",
    "list": "array",
    "dict": "object",
    "model": "object",
}


def _strip_optional(tp: Any) -> list[Any]:
    """The members of a union type (or ``[tp]``), without ``None``."""
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return [a for a in typing.get_args(tp) if a is not type(None)]
    if origin is typing.Annotated:
        return _strip_optional(typing.get_args(tp)[0])
    return [tp]


def _field_type(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if (info.alias or name) == key:
            return info.annotation
    return None


def _union_tag(members: list[Any], elem: Any) -> bool:
    if not isinstance(elem, str) or len(members) < 2:
        return False
    for m in members:
        name = getattr(m, "__name__", None) or str(m)
        origin = typing.get_origin(m)
        if elem == name or (
            origin is not None and elem.startswith(getattr(origin, "__name__", "?"))
        ):
            return True
        if typing.get_origin(m) is typing.Literal and elem.startswith("literal["):
            return True
    return False


def format_loc(loc: tuple[int | str, ...], model: type[BaseModel] | None) -> str:
    """``('spec', 'http', 0, 'route')`` -> ``spec.http[0].route``; map keys as ``[key]``."""
    out = ""
    current: Any = model
    for elem in loc:
        members = _strip_optional(current) if current is not None else []
        if _union_tag(members, elem):
            # pydantic names the union member tried; it is not part of the user's path
            current = next((m for m in members if getattr(m, "__name__", None) == elem), None)
            continue
        tp = members[0] if len(members) == 1 else None
        origin = typing.get_origin(tp)
        if isinstance(elem, int):
            out += f"[{elem}]"
            args = typing.get_args(tp) if origin is list else ()
            current = args[0] if args else None
        elif origin is dict:
            if elem == "[key]":
                continue
            out += f"[{elem}]"
            current = typing.get_args(tp)[1]
        else:
            out += f".{elem}" if out else str(elem)
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                current = _field_type(tp, str(elem))
            else:
                current = None
    return out


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean " + ("true" if value else "false")
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__


def _reason(err: Any) -> str:
    etype: str = err["type"]
    inp = err.get("input")
    loc = err["loc"]
    if etype == "extra_forbidden":
        return f'unknown field "{loc[-1]}"'
    if etype == "missing":
        return "Required value"
    if etype == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        allowed = ", ".join(p.strip() for p in expected.replace(" or ", ", ").split(","))
        return f'Unsupported value: "{inp}": supported values: {allowed}'
    base = etype.split("_", 1)[0]
    if etype.endswith("_type") or etype.endswith("_parsing") or etype == "model_attributes_type":
        want = _TYPE_NAMES.get(base, base)
        return f"Invalid value: {_describe(inp)}: must be of type {want}"
    if etype == "int_from_float":
        return f"Invalid value: {_describe(inp)}: must be an integer"
    return str(err.get("msg", etype))


def field_errors(exc: pydantic.ValidationError, model: type[BaseModel] | None) -> list[FieldError]:
    """One FieldError per pydantic error; union alternatives for one field become one error."""
    by_path: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = format_loc(tuple(err["loc"]), model)
        by_path.setdefault(path, []).append(_reason(err))
    out: list[FieldError] = []
    for path, reasons in by_path.items():
        unique = list(dict.fromkeys(reasons))
        if len(unique) > 1 and all(r.startswith("Invalid value:") for r in unique):
            types_ = " or ".join(r.rsplit("must be of type ", 1)[-1] for r in unique)
            head = unique[0].rsplit(": must be", 1)[0]
            out.append(FieldError(path, f"{head}: must be of type {types_}"))
        else:
            out.extend(FieldError(path, r) for r in unique)
    return out
