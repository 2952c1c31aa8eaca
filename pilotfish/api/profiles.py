"""Install profiles, ``--set`` and the components an ``IstioOperator`` asks for.

``pilotfish install --set profile=demo`` reads as ``istioctl install`` does: a profile is an
``IstioOperator`` (``pilotfish profile dump demo``); ``-f operator.yaml`` is merged over it,
then each ``--set key=value``. The result is stored as ``istio-system/installed-state`` (the
name istioctl gives the installed operator), so its ``spec.meshConfig`` is the mesh config
everything reads (:mod:`pilotfish.api.meshconfig`), and its components say which of the local
mesh's parts run:

===========================  ===================================  =======  ====  =======  =====
component                    IstioOperator field                  default  demo  minimal  empty
===========================  ===================================  =======  ====  =======  =====
control plane + pod runtime  ``components.pilot``                 on       on    on       on
ingress gateway              ``components.ingressGateways[0]``    on       on    off      off
egress gateway               ``components.egressGateways[0]``     off      on    off      off
Prometheus                   ``addonComponents.prometheus``       on       on    off      off
trace collector              ``addonComponents.tracing``          on       on    off      off
dashboard                    ``addonComponents.kiali``            on       on    off      off
===========================  ===================================  =======  ====  =======  =====

(``addonComponents`` is Istio 1.6's operator field for its addons.) The demo profile also turns
on access logs (``meshConfig.accessLogFile: /dev/stdout``) and traces every request
(``values.pilot.traceSampling: 100``), as Istio's does. Pure: nothing here starts anything.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from pilotfish.api.meshconfig import (
    VALUES_MESH_KEYS,
    VALUES_PILOT_ENV_KEYS,
    MeshConfig,
    parse_cidrs,
)

__all__ = [
    "COMPONENT_NAMES",
    "PROFILES",
    "VALUES_COMPONENT_KEYS",
    "Components",
    "SetError",
    "apply_set",
    "components_of",
    "install_operator",
    "merge_spec",
    "parse_set",
    "profile_operator",
]

PROFILES = ("default", "demo", "minimal", "empty")

#: Ingress and egress gateway names, as Istio's profiles name them.
INGRESS_GATEWAY = "istio-ingressgateway"
EGRESS_GATEWAY = "istio-egressgateway"


class SetError(ValueError):
    """A ``--set`` (or profile) Pilotfish does not know; the message names the key."""


@dataclass(frozen=True)
class Components:
    """Which parts of the local mesh run (the control plane and pod runtime always do)."""

    ingress_gateway: bool = True
    egress_gateway: bool = False
    prometheus: bool = True
    trace_collector: bool = True
    dashboard: bool = True

    def enabled(self) -> list[str]:
        return [COMPONENT_NAMES[k] for k, on in self.__dict__.items() if on]

    def disabled(self) -> list[str]:
        return [COMPONENT_NAMES[k] for k, on in self.__dict__.items() if not on]


COMPONENT_NAMES = {
    "ingress_gateway": "ingress gateway",
    "egress_gateway": "egress gateway",
    "prometheus": "prometheus",
    "trace_collector": "trace collector",
    "dashboard": "dashboard",
}


def _gateways(ingress: bool, egress: bool) -> dict[str, Any]:
    return {
        "base": {"enabled": True},
        "pilot": {"enabled": True},
        "ingressGateways": [{"name": INGRESS_GATEWAY, "enabled": ingress}],
        "egressGateways": [{"name": EGRESS_GATEWAY, "enabled": egress}],
    }


def _addons(on: bool) -> dict[str, Any]:
    return {name: {"enabled": on} for name in ("prometheus", "tracing", "kiali")}


def _profile_spec(name: str) -> dict[str, Any]:
    mesh: dict[str, Any] = {"enablePrometheusMerge": True}
    values: dict[str, Any] = {}
    if name == "default":
        components, addons = _gateways(True, False), _addons(True)
    elif name == "demo":
        components, addons = _gateways(True, True), _addons(True)
        mesh["accessLogFile"] = "/dev/stdout"
        values["pilot"] = {"traceSampling": 100.0}
    elif name == "minimal":
        components, addons = _gateways(False, False), _addons(False)
    elif name == "empty":
        components, addons = _gateways(False, False), _addons(False)
        components["base"]["enabled"] = False
        mesh, values = {}, {}
    else:
        raise SetError(f'unknown profile "{name}" (profiles: {", ".join(PROFILES)})')
    return {
        "profile": name,
        "components": components,
        "addonComponents": addons,
        "meshConfig": mesh,
        "values": values,
    }


def profile_operator(name: str) -> dict[str, Any]:
    """The ``IstioOperator`` of profile ``name`` (what ``profile dump`` prints). Pure."""
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "installed-state", "namespace": "istio-system"},
        "spec": _profile_spec(name),
    }


# ---------------------------------------------------------------- merging


def _merge_named(base: list[Any], over: list[Any]) -> list[Any]:
    """Gateway lists merge by ``name`` (as istioctl overlays them); other lists are replaced."""
    if not all(isinstance(x, dict) and "name" in x for x in [*base, *over]):
        return copy.deepcopy(over)
    out = [copy.deepcopy(x) for x in base]
    for item in over:
        for i, existing in enumerate(out):
            if existing["name"] == item["name"]:
                out[i] = merge_spec(existing, item)
                break
        else:
            out.append(copy.deepcopy(item))
    return out


def merge_spec(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base``: maps merge key by key, named lists by name. Pure."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_spec(out[key], value)
        elif isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_named(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# ---------------------------------------------------------------- --set

_STEP = re.compile(r"^([A-Za-z_][\w.-]*?)(?:\[(\d+)\])?$")

#: ``values.*`` keys that choose components (Istio 1.5/1.6 Helm values and gateway values).
VALUES_COMPONENT_KEYS = {
    "prometheus.enabled": ("addonComponents", "prometheus", "enabled"),
    "tracing.enabled": ("addonComponents", "tracing", "enabled"),
    "kiali.enabled": ("addonComponents", "kiali", "enabled"),
    f"gateways.{INGRESS_GATEWAY}.enabled": ("components", "ingressGateways", INGRESS_GATEWAY),
    f"gateways.{EGRESS_GATEWAY}.enabled": ("components", "egressGateways", EGRESS_GATEWAY),
}

#: ``components.*`` and ``addonComponents.*`` keys ``--set`` takes.
_COMPONENT_KEYS = re.compile(
    r"^(components\.(base|pilot)\.enabled"
    r"|components\.(ingressGateways|egressGateways)\[0\]\.enabled"
    r"|addonComponents\.(prometheus|tracing|kiali)\.enabled)$"
)


def parse_set(text: str) -> tuple[str, Any]:
    """``key=value`` as istioctl reads it: ``true``/``false`` and numbers typed, the rest text."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SetError(f"--set {text!r}: expected key=value (e.g. --set profile=demo)")
    value: Any = raw
    if raw != "":
        try:
            parsed = yaml.safe_load(raw)
        except yaml.YAMLError:
            parsed = raw
        if isinstance(parsed, bool | int | float) or parsed is None:
            value = raw if parsed is None else parsed
    return key.strip(), value


def _model_path_problem(model: type[BaseModel], steps: list[str], prefix: str) -> str | None:
    """Why ``steps`` is not a field path of ``model`` (``None``: it is)."""
    current: Any = model
    walked = prefix
    for step in steps:
        m = _STEP.match(step)
        if not m:
            return f"{walked}.{step}: not a field name"
        name, index = m.group(1), m.group(2)
        if current is dict:
            walked += f".{step}"
            current = Any
            continue
        if current is Any:
            walked += f".{step}"
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return f'{walked} is a value, it has no field "{step}"'
        fields = current.model_fields
        if name not in fields:
            known = ", ".join(sorted(fields))
            return f'unknown field "{name}" of {walked} (known: {known})'
        walked += f".{step}"
        current = _field_type(fields[name].annotation, index is not None)
        if current is None:
            return f"{walked}: {name} is not a list, it takes no [index]"
    return None


def _field_type(annotation: Any, indexed: bool) -> Any:
    """The model (or ``dict``/``Any``) behind an annotation, unwrapping Optional and lists."""
    import types
    import typing

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and args:
        return _field_type(args[0], indexed)
    if origin is list:
        if not indexed:
            return Any
        return _field_type(args[0], False) if args else Any
    if indexed:
        return None
    if origin is dict or annotation is dict:
        return dict
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return Any


def _set_path(spec: dict[str, Any], steps: list[str], value: Any) -> None:
    node: Any = spec
    for i, step in enumerate(steps):
        m = _STEP.match(step)
        assert m is not None
        name, index = m.group(1), m.group(2)
        last = i == len(steps) - 1
        if index is None:
            if last:
                node[name] = value
                return
            if not isinstance(node.get(name), dict):
                node[name] = {}
            node = node[name]
            continue
        items = node.get(name) if isinstance(node.get(name), list) else []
        node[name] = items
        n = int(index)
        while len(items) <= n:
            items.append({})
        if last:
            items[n] = value
            return
        if not isinstance(items[n], dict):
            items[n] = {}
        node = items[n]


def _set_named_gateway(spec: dict[str, Any], section: str, name: str, on: Any) -> None:
    gateways = spec.setdefault("components", {}).setdefault(section, [])
    for g in gateways:
        if isinstance(g, dict) and g.get("name") == name:
            g["enabled"] = on
            return
    gateways.append({"name": name, "enabled": on})


def apply_set(spec: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (istioctl's ``--set`` path, without ``spec.``) in ``spec`` in place.

    Known: ``profile``, ``meshConfig.*`` (fields of the mesh config model), the ``values.*`` of
    :data:`~pilotfish.api.meshconfig.VALUES_MESH_KEYS`, :data:`VALUES_COMPONENT_KEYS` and
    ``values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS``,
    ``components.{base,pilot}.enabled``, ``components.{ingress,egress}Gateways[0].enabled``
    and ``addonComponents.{prometheus,tracing,kiali}.enabled``. Anything else raises
    :class:`SetError` naming the key.
    """
    if key == "profile":
        if value not in PROFILES:
            known = ", ".join(PROFILES)
            raise SetError(f"--set profile={value}: unknown profile (profiles: {known})")
        spec["profile"] = value
        return
    head, _, rest = key.partition(".")
    if head == "meshConfig" and rest:
        problem = _model_path_problem(MeshConfig, rest.split("."), "meshConfig")
        if problem:
            raise SetError(f"--set {key}: {problem}")
        _set_path(spec, key.split("."), value)
        return
    if head == "values" and rest in VALUES_COMPONENT_KEYS:
        section, group, leaf = VALUES_COMPONENT_KEYS[rest]
        if section == "components":
            _set_named_gateway(spec, group, leaf, value)
        else:
            spec.setdefault(section, {}).setdefault(group, {})[leaf] = value
        return
    if head == "values" and rest in VALUES_MESH_KEYS:
        _set_path(spec, key.split("."), value)
        # meshConfig wins over values: a later --set must win over an earlier meshConfig.
        _set_path(spec, ["meshConfig", *VALUES_MESH_KEYS[rest].split(".")], value)
        return
    if head == "values" and rest in VALUES_PILOT_ENV_KEYS:
        try:
            parse_cidrs(str(value))
        except ValueError as exc:
            raise SetError(f"--set {key}: {exc}") from None
        _set_path(spec, key.split("."), str(value))
        return
    if head == "values":
        keys = sorted([*VALUES_MESH_KEYS, *VALUES_COMPONENT_KEYS, *VALUES_PILOT_ENV_KEYS])
        raise SetError(
            f"--set {key}: not a values key Pilotfish acts on (known: "
            + ", ".join(f"values.{k}" for k in keys)
            + ")"
        )
    if _COMPONENT_KEYS.match(key):
        if key == "components.pilot.enabled" and value is not True:
            raise SetError(f"--set {key}={value}: the control plane always runs in Pilotfish")
        _set_path(spec, key.split("."), value)
        return
    raise SetError(
        f'--set {key}: unknown key "{head}" (known: profile, meshConfig.*, values.*, '
        "components.{base,pilot}.enabled, components.ingressGateways[0].enabled, "
        "components.egressGateways[0].enabled, addonComponents.{prometheus,tracing,kiali}.enabled)"
    )


# ---------------------------------------------------------------- the installed operator


def install_operator(
    file_spec: dict[str, Any] | None, sets: list[tuple[str, Any]]
) -> dict[str, Any]:
    """The ``installed-state`` IstioOperator: the profile (``--set profile``, else the file's
    ``spec.profile``, else ``default``), the file's spec over it, then each ``--set``. Pure."""
    file_spec = copy.deepcopy(file_spec or {})
    profile = str(file_spec.get("profile") or "default")
    for key, value in sets:
        if key == "profile":
            profile = str(value)
    if profile not in PROFILES:
        raise SetError(f'unknown profile "{profile}" (profiles: {", ".join(PROFILES)})')
    spec = merge_spec(_profile_spec(profile), file_spec)
    for key, value in sets:
        apply_set(spec, key, value)
    spec["profile"] = profile
    body = profile_operator(profile)
    body["spec"] = spec
    return body


def _enabled(node: Any, default: bool) -> bool:
    if isinstance(node, dict) and "enabled" in node:
        return node["enabled"] is True
    return default


def _gateway_enabled(spec: dict[str, Any], section: str, name: str) -> bool:
    for g in (spec.get("components") or {}).get(section) or []:
        if isinstance(g, dict) and g.get("name", name) == name:
            return _enabled(g, False)
    return False


def components_of(spec: dict[str, Any]) -> Components:
    """The components an IstioOperator spec asks for (absent: off, as in Istio). Pure."""
    addons = spec.get("addonComponents") or {}
    return Components(
        ingress_gateway=_gateway_enabled(spec, "ingressGateways", INGRESS_GATEWAY),
        egress_gateway=_gateway_enabled(spec, "egressGateways", EGRESS_GATEWAY),
        prometheus=_enabled(addons.get("prometheus"), False),
        trace_collector=_enabled(addons.get("tracing"), False),
        dashboard=_enabled(addons.get("kiali"), False),
    )
