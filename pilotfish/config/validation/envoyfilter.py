"""EnvoyFilter semantics, after Istio's EnvoyFilter validation, plus what Pilotfish cannot do.

Istio's checks (missing applyTo, operation or value, match classes per applyTo, filter and
sub-filter names, proxyVersion regex, values that do not parse into the Envoy type ``applyTo``
names or that name an unknown ``@type``), each on its field. Pilotfish refuses, by field,
what it would otherwise accept and ignore: an operation ``applyTo`` does not support
(EXTENSION_CONFIG takes ADD only, BOOTSTRAP MERGE only, as Istio acts on nothing else;
BOOTSTRAP is warned to take effect on proxy restart), an extension config
without a name or ``typed_config``. ``targetRefs`` are
checked as Istio checks them and warned about: they attach to Gateway API gateways and
waypoints, which Pilotfish does not run, so such a filter applies to no proxy. It
warns where a patch is accepted but will not do what it seems to: Envoy's local rate limit
without ``filter_enforced`` only counts (shadow mode), a ``proxyVersion`` that matches only
proxies that report ``ISTIO_VERSION``, ``portName`` that Istio itself does not implement.
"""

from __future__ import annotations

import re
from typing import Any

from pilotfish.api.envoyvalue import PatchValueError, parse_value
from pilotfish.api.networking import EnvoyConfigObjectPatch, EnvoyFilter
from pilotfish.config.validation.common import Errors, check_selector, port_error
from pilotfish.config.validation.security import check_policy_target

LISTENER_CLASS = ("LISTENER", "FILTER_CHAIN", "NETWORK_FILTER", "HTTP_FILTER", "LISTENER_FILTER")
ROUTE_CLASS = ("ROUTE_CONFIGURATION", "VIRTUAL_HOST", "HTTP_ROUTE")
HCM_NAMES = ("envoy.filters.network.http_connection_manager", "envoy.http_connection_manager")
_FILTER_OPS = ("ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", "REPLACE")
_MERGES = ("MERGE", "MERGE_AND_REPLACE_LIST")

#: The operations each ``applyTo`` supports (what Istio's patching code acts on).
OPERATIONS: dict[str, tuple[str, ...]] = {
    "LISTENER": ("ADD", "REMOVE", *_MERGES),
    "FILTER_CHAIN": ("ADD", "REMOVE", *_MERGES),
    "NETWORK_FILTER": (*_FILTER_OPS, *_MERGES),
    "HTTP_FILTER": (*_FILTER_OPS, *_MERGES),
    "LISTENER_FILTER": _FILTER_OPS,
    "ROUTE_CONFIGURATION": _MERGES,
    "VIRTUAL_HOST": ("ADD", "REMOVE", *_MERGES),
    "HTTP_ROUTE": ("ADD", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "INSERT_FIRST", *_MERGES),
    "CLUSTER": ("ADD", "REMOVE", *_MERGES),
    # Istio's ECDS output takes the configs its EXTENSION_CONFIG patches ADD, nothing else.
    "EXTENSION_CONFIG": ("ADD",),
    # Istio merges BOOTSTRAP patches into the bootstrap and does nothing else with them.
    "BOOTSTRAP": ("MERGE",),
}

#: Filters Istio generates and Pilotfish does not (its metrics come from an access logger, the
#: peer metadata from a header_to_metadata filter): a match on them finds nothing.
ISTIO_ONLY_FILTERS = {
    "istio.stats": "Istio's metrics come from an access logger here",
    "istio.metadata_exchange": "peer metadata comes from envoy.filters.http.header_to_metadata",
    "istio_authn": "JWT results come straight from envoy.filters.http.jwt_authn",
    "istio.alpn": "the mesh ALPN is set on the upstream TLS context",
}

LOCAL_RATE_LIMIT = (
    "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
)


def validate_envoy_filter(ef: EnvoyFilter, errs: Errors, namespace: str) -> None:
    spec = ef.spec
    if spec.workloadSelector is not None:
        check_selector(errs, "spec.workloadSelector.labels", spec.workloadSelector.labels)
        if spec.targetRefs:
            errs.add("spec", "only one of targetRefs or workloadSelector can be set")
    if spec.targetRefs:
        # Istio's checks of each reference (kinds, name, no namespace), then what it means
        # here: Istio applies such a filter to the targeted Gateway API gateways and
        # waypoints only, and Pilotfish runs neither.
        check_policy_target(errs, None, None, spec.targetRefs)
        errs.warn(
            "spec.targetRefs",
            "not supported yet: targetRefs attach to Gateway API gateways and waypoints, which "
            "Pilotfish does not run; this EnvoyFilter applies to no Pilotfish proxy (use "
            "workloadSelector)",
        )
    for i, cp in enumerate(spec.configPatches):
        _validate_patch(cp, f"spec.configPatches[{i}]", errs)


def _validate_patch(cp: EnvoyConfigObjectPatch, path: str, errs: Errors) -> None:
    apply_to = cp.applyTo
    if apply_to is None or apply_to == "INVALID":
        errs.add(f"{path}.applyTo", "Envoy filter: missing applyTo")
        return
    if cp.patch is None:
        errs.add(f"{path}.patch", "Envoy filter: missing patch")
        return
    op = cp.patch.operation
    if op is None or op == "INVALID":
        errs.add(f"{path}.patch.operation", "Envoy filter: missing patch operation")
        return
    if op != "REMOVE" and cp.patch.value is None:
        errs.add(
            f"{path}.patch.value", "Envoy filter: missing patch value for non-remove operation"
        )
        return
    if apply_to == "BOOTSTRAP":
        errs.warn(
            f"{path}.applyTo",
            "BOOTSTRAP patches take effect when a selected proxy starts: restart its pods (as "
            "in Istio); running proxies keep their bootstrap",
        )
    allowed = OPERATIONS[apply_to]
    if op not in allowed:
        errs.add(
            f"{path}.patch.operation",
            f"Envoy filter: operation {op} is not supported for applyTo {apply_to} "
            f"(supported: {', '.join(allowed)})",
        )
    if cp.patch.filterClass not in (None, "UNSPECIFIED"):
        errs.add(
            f"{path}.patch.filterClass",
            "not supported yet: filterClass (Istio positions the filter among its own "
            "AUTHN/AUTHZ/STATS filters); use INSERT_BEFORE/INSERT_AFTER with a subFilter",
        )
    _validate_match(cp, path, errs)
    if op == "REMOVE" and cp.patch.value is None:
        return
    try:
        value = parse_value(apply_to, cp.patch.value)
    except PatchValueError as exc:
        where = f"{path}.patch.value" + (f".{exc.path}" if exc.path else "")
        errs.add(where, f"Envoy filter: {exc.reason}")
        return
    if apply_to == "HTTP_FILTER":
        _warn_rate_limit(cp.patch.value, value, f"{path}.patch.value", errs)
    if apply_to == "EXTENSION_CONFIG":
        _check_extension_config(value, f"{path}.patch.value", errs)


def _check_extension_config(value: Any, path: str, errs: Errors) -> None:
    """An ECDS resource is found by its name, and Envoy takes none without a config."""
    if not value.name:
        errs.add(
            f"{path}.name",
            "Envoy filter: an extension config needs the name HTTP filters refer to it by "
            "(config_discovery)",
        )
    if not value.HasField("typed_config"):
        errs.add(f"{path}.typed_config", "Envoy filter: an extension config needs typed_config")


def _validate_match(cp: EnvoyConfigObjectPatch, path: str, errs: Errors) -> None:
    m = cp.match
    if m is None:
        return
    apply_to = cp.applyTo
    if apply_to in LISTENER_CLASS and (m.routeConfiguration or m.cluster):
        errs.add(
            f"{path}.match",
            "Envoy filter: applyTo for listener class objects cannot have non listener match",
        )
    if apply_to in ROUTE_CLASS and (m.listener or m.cluster):
        errs.add(
            f"{path}.match",
            "Envoy filter: applyTo for http route class objects cannot have non route "
            "configuration match",
        )
    if apply_to == "EXTENSION_CONFIG" and (m.listener or m.routeConfiguration or m.cluster):
        errs.warn(
            f"{path}.match",
            "has no effect with applyTo EXTENSION_CONFIG: the config is served by its name to "
            "the HTTP filters whose config_discovery names it",
        )
    if apply_to == "CLUSTER" and (m.listener or m.routeConfiguration):
        errs.add(
            f"{path}.match",
            "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
        )
    if m.proxy is not None and m.proxy.proxyVersion:
        try:
            re.compile(m.proxy.proxyVersion)
        except re.error as exc:
            errs.add(
                f"{path}.match.proxy.proxyVersion",
                f"Envoy filter: invalid regex for proxy version, [{exc}]",
            )
        else:
            errs.warn(
                f"{path}.match.proxy.proxyVersion",
                "matches only proxies whose node metadata reports ISTIO_VERSION; Pilotfish's "
                "agent reports none, so this patch applies to no Pilotfish sidecar",
            )
    lm = m.listener
    if (
        lm is not None
        and apply_to == "LISTENER"
        and cp.patch is not None
        and cp.patch.operation in _MERGES
        and m.context != "GATEWAY"
        and (lm.portNumber or (lm.name and lm.name not in ("virtualInbound", "virtualOutbound")))
    ):
        errs.warn(
            f"{path}.match.listener",
            "on captured sidecars Istio's per-port listeners are filter chains of "
            "virtualInbound/virtualOutbound: a LISTENER MERGE for one port merges into nothing "
            "there (it does apply to gateway and explicit-mode listeners); use FILTER_CHAIN",
        )
    if lm is not None:
        if lm.portNumber:
            errs.add(f"{path}.match.listener.portNumber", port_error(lm.portNumber))
        if lm.portName:
            errs.warn(
                f"{path}.match.listener.portName",
                "ignored: Istio does not implement portName matching; use portNumber",
            )
        if lm.listenerFilter and apply_to != "LISTENER_FILTER":
            errs.warn(
                f"{path}.match.listener.listenerFilter",
                f"has no effect with applyTo {apply_to} (only LISTENER_FILTER)",
            )
        fc = lm.filterChain
        f = fc.filter if fc is not None else None
        if f is not None:
            fpath = f"{path}.match.listener.filterChain.filter"
            if apply_to in ("LISTENER", "FILTER_CHAIN"):
                errs.warn(
                    fpath, f"Envoy filter: filter match has no effect when used with {apply_to}"
                )
            if not f.name:
                errs.add(f"{fpath}.name", "Envoy filter: filter match has no name to match on")
            elif f.subFilter is not None:
                if apply_to != "HTTP_FILTER":
                    errs.add(
                        f"{fpath}.subFilter",
                        "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only",
                    )
                elif f.name not in HCM_NAMES:
                    errs.add(
                        f"{fpath}.subFilter",
                        f"Envoy filter: subfilter match requires filter match with {HCM_NAMES[0]}",
                    )
                elif not f.subFilter.name:
                    errs.add(
                        f"{fpath}.subFilter.name",
                        "Envoy filter: subfilter match has no name to match on",
                    )
                else:
                    _warn_istio_only(f.subFilter.name, f"{fpath}.subFilter.name", errs)
            if f.name:
                _warn_istio_only(f.name, f"{fpath}.name", errs)
    rm = m.routeConfiguration
    if rm is not None:
        if rm.portNumber:
            errs.add(f"{path}.match.routeConfiguration.portNumber", port_error(rm.portNumber))
        if rm.gateway and m.context not in ("GATEWAY", "ANY", None):
            errs.warn(
                f"{path}.match.routeConfiguration.gateway",
                "has no effect with context SIDECAR_*: only gateways' route configurations "
                "are matched by Gateway name (as Istio)",
            )
        elif rm.gateway and "/" not in rm.gateway:
            errs.warn(
                f"{path}.match.routeConfiguration.gateway",
                "matches nothing: a Gateway is named namespace/name",
            )
        if rm.portName:
            errs.warn(
                f"{path}.match.routeConfiguration.portName",
                "ignored: Istio does not implement portName matching; use portNumber",
            )
    cm = m.cluster
    if cm is not None and cm.portNumber:
        errs.add(f"{path}.match.cluster.portNumber", port_error(cm.portNumber))


def _warn_istio_only(name: str, path: str, errs: Errors) -> None:
    why = ISTIO_ONLY_FILTERS.get(name)
    if why is not None:
        errs.warn(
            path,
            f"matches nothing: Pilotfish generates no {name} filter ({why}); see "
            "docs/envoyfilter.md for the filters each listener carries",
        )


def _warn_rate_limit(raw: Any, value: Any, path: str, errs: Errors) -> None:
    """Envoy's local rate limit counts only the share in ``filter_enabled`` and limits only
    the share in ``filter_enforced``; both default to 0%."""
    from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2

    if value.typed_config.type_url != LOCAL_RATE_LIMIT:
        return
    cfg = local_rate_limit_pb2.LocalRateLimit()
    value.typed_config.Unpack(cfg)
    typed = raw.get("typed_config", raw.get("typedConfig")) if isinstance(raw, dict) else None
    where = path + ".typed_config"
    if (isinstance(typed, dict) and "type_url" in typed) or (
        isinstance(typed, dict) and "typeUrl" in typed
    ):
        where += ".value"
    if not cfg.HasField("filter_enabled"):
        errs.warn(
            f"{where}.filter_enabled",
            "not set: Envoy's local rate limit defaults to 0% enabled, so this filter neither "
            "counts nor limits requests (unless a route's typed_per_filter_config enables it)",
        )
    elif not cfg.HasField("filter_enforced"):
        errs.warn(
            f"{where}.filter_enforced",
            "not set: Envoy's local rate limit defaults to 0% enforced, so this filter runs in "
            "shadow mode: it counts requests over the budget (stat "
            f"{cfg.stat_prefix or 'http_local_rate_limit'}.http_local_rate_limit.rate_limited) "
            "but never answers 429; add filter_enforced (as Istio's rate limit task does) to "
            "limit",
        )
