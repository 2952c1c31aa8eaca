"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication semantics, after Istio's
``ValidatePeerAuthentication``, ``ValidateAuthorizationPolicy`` and ``validateJwtRule``."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from urllib.parse import urlsplit

from pilotfish.api.meta import PolicyTargetReference, WorkloadSelector
from pilotfish.api.security import (
    AuthorizationPolicy,
    Condition,
    PeerAuthentication,
    RequestAuthentication,
)
from pilotfish.config.validation.common import (
    NOT_APPLIED,
    Errors,
    check_selector,
    duration_error,
    header_name_error,
)

#: ``when`` keys Istio accepts: exact names, and prefixes that take a ``[name]`` suffix.
WHEN_KEYS = frozenset(
    {
        "source.ip",
        "remote.ip",
        "source.namespace",
        "source.principal",
        "source.serviceAccount",
        "request.auth.principal",
        "request.auth.audiences",
        "request.auth.presenter",
        "destination.ip",
        "destination.port",
        "connection.sni",
    }
)
WHEN_MAP_PREFIXES = (
    "request.headers",
    "request.experimental.inline.headers",
    "request.auth.claims",
    "experimental.envoy.filters.",
)
_TARGET_KINDS = {
    ("", "Service"),
    ("core", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
}


def check_policy_target(
    errs: Errors,
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetReference | None,
    target_refs: Sequence[PolicyTargetReference],
) -> None:
    """Istio validateOneOfSelectorType, validateWorkloadSelector, validatePolicyTargetReference."""
    if sum((selector is not None, target_ref is not None, bool(target_refs))) > 1:
        errs.add("spec", "only one of targetRefs or workloadSelector can be set")
    if selector is not None:
        check_selector(errs, "spec.selector.matchLabels", selector.matchLabels)
        if not selector.matchLabels:
            errs.warn("spec.selector", "workload selector specified without labels")
    refs = [("spec.targetRef", target_ref)] if target_ref is not None else []
    refs += [(f"spec.targetRefs[{i}]", r) for i, r in enumerate(target_refs)]
    for path, ref in refs:
        if not ref.name:
            errs.add(f"{path}.name", "targetRef name must be set")
        if ref.namespace:
            errs.add(
                f"{path}.namespace",
                "targetRef namespace must not be set; cross namespace referencing is not supported",
            )
        if (ref.group or "", ref.kind) not in _TARGET_KINDS:
            errs.add(
                path,
                "targetRef must be to one of core/Service, networking.istio.io/ServiceEntry, "
                "gateway.networking.k8s.io/Gateway, gateway.networking.k8s.io/GatewayClass but "
                f"was {ref.group or ''}/{ref.kind}",
            )


# --- PeerAuthentication ----------------------------------------------------------------------


def validate_peer_authentication(pa: PeerAuthentication, errs: Errors, namespace: str) -> None:
    spec = pa.spec
    empty_selector = spec.selector is None or not spec.selector.matchLabels
    if empty_selector and spec.portLevelMtls:
        errs.add(
            "spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS"
        )
    if "portLevelMtls" in spec.model_fields_set and not spec.portLevelMtls:
        errs.add(
            "spec.portLevelMtls", "port level mTLS, if defined, must have at least one element"
        )
    for port in spec.portLevelMtls:
        if not 1 <= port <= 65535:
            errs.add(f"spec.portLevelMtls[{port}]", "port must be in range 1..65535")
    if spec.selector is not None:
        check_selector(errs, "spec.selector.matchLabels", spec.selector.matchLabels)


# --- AuthorizationPolicy ---------------------------------------------------------------------


def _ip_errors(values: Sequence[str]) -> list[str]:
    out = []
    for v in values:
        try:
            if "/" in v:
                ipaddress.ip_network(v, strict=False)
            else:
                ipaddress.ip_address(v)
        except ValueError:
            out.append(f"bad CIDR range ({v})" if "/" in v else f"bad IP address ({v})")
    return out


def _port_errors(values: Sequence[str]) -> list[str]:
    return [
        f"bad port ({p}): must be a number in 1..65535"
        for p in values
        if not (p.isdigit() and 1 <= int(p) <= 65535)
    ]


def _service_account_errors(key: str, values: Sequence[str]) -> list[str]:
    out = []
    if len(values) > 16:
        out.append("may not have more than 16 values")
    for v in values:
        if "*" in v:
            out.append(f"wildcard not allowed, found in {key}")
        elif v.count("/") > 1 or (v.count("/") == 1 and "" in v.split("/")):
            out.append(
                f"expected format 'serviceAccount' or 'namespace/serviceAccount', found "
                f'"{v}" in {key}'
            )
        elif len(v) > 320:
            out.append(f'value cannot exceed 320 characters, found "{v}" in {key}')
    return out


def _path_template_error(key: str, paths: Sequence[str]) -> str | None:
    for path in paths:
        has_template = "{*}" in path or "{**}" in path
        found_any = False
        for glob in path.strip("/").split("/"):
            if glob in ("{*}", "{**}"):
                if found_any:
                    return (
                        f"invalid or unsupported path {path}, found in {key}. "
                        "{**} is not the last operator"
                    )
                found_any = glob == "{**}"
                continue
            if "{" in glob or "}" in glob:
                return (
                    f"invalid or unsupported path {path}, found in {key}. Contains '{{' or '}}' "
                    "beyond a supported path template"
                )
            if (
                has_template
                and glob
                and not all(c.isalnum() or c in "-._~%!$&'()+,;:@=" for c in glob)
            ):
                return (
                    f"invalid or unsupported path {path}, found in {key}. Contains segment "
                    f"{glob} with invalid string literal"
                )
    return None


def attribute_error(key: str, values: Sequence[str]) -> str | None:
    """Istio security.ValidateAttribute for a ``when`` condition."""
    if any(v == "" for v in values):
        return f"empty value not allowed, found in {key}"
    if key.startswith(WHEN_MAP_PREFIXES):
        return None if _is_map_key(key) else f"bad key ({key}): should have format a[b]"
    if key in ("source.ip", "remote.ip", "destination.ip"):
        errors = _ip_errors(values)
        return "; ".join(errors) if errors else None
    if key == "destination.port":
        errors = _port_errors(values)
        return "; ".join(errors) if errors else None
    if key == "source.serviceAccount":
        errors = _service_account_errors(key, values)
        return "; ".join(errors) if errors else None
    if key in WHEN_KEYS:
        return None
    if key == "destination.namespace":
        return f"attribute {key} is replaced by the metadata.namespace"
    if key.startswith("destination.labels"):
        return f"attribute {key} is replaced by the workload selector"
    if key in ("destination.name", "destination.user"):
        return f"deprecated attribute {key}: only supported in v1alpha1"
    return f"unknown attribute: {key}"


def _is_map_key(key: str) -> bool:
    open_ = key.find("[")
    return key.endswith("]") and 0 < open_ < len(key) - 2


def _condition(errs: Errors, path: str, c: Condition) -> None:
    if not c.key:
        errs.add(f"{path}.key", "`key` must not be empty")
        return
    if not c.values and not c.notValues:
        errs.add(path, f"at least one of `values` or `notValues` must be set for key {c.key}")
        return
    if (err := attribute_error(c.key, c.values)) is not None:
        # a bad key is reported on the key, a bad value on the values
        where = "values" if c.key in WHEN_KEYS or _is_map_key(c.key) else "key"
        errs.add(f"{path}.{where}", f"invalid `value` for `key` {c.key}: {err}")
        return
    if (err := attribute_error(c.key, c.notValues)) is not None:
        errs.add(f"{path}.notValues", f"invalid `notValue` for `key` {c.key}: {err}")


_SOURCE_FIELDS = (
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "serviceAccounts",
    "notServiceAccounts",
    "trustDomains",
    "notTrustDomains",
)
_OPERATION_FIELDS = (
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
)


def validate_authorization_policy(ap: AuthorizationPolicy, errs: Errors, namespace: str) -> None:
    spec = ap.spec
    check_policy_target(errs, spec.selector, spec.targetRef, spec.targetRefs)
    if spec.targetRef is not None or spec.targetRefs:
        errs.warn(
            "spec.targetRefs" if spec.targetRefs else "spec.targetRef",
            "not supported yet: policies attached to a Service or Gateway are for waypoints and "
            "Gateway API gateways; this policy applies to no Pilotfish proxy",
        )
    action = spec.action or "ALLOW"
    if action == "CUSTOM":
        annotations = ap.metadata.annotations or {}
        if str(annotations.get("istio.io/dry-run", "")).lower() == "true":
            errs.warn(
                "metadata.annotations[istio.io/dry-run]",
                "not applied to CUSTOM policies yet: the policy is enforced",
            )
        if not spec.rules:
            errs.add(
                "spec.rules",
                "CUSTOM action without `rules` is meaningless as it will never be triggered, "
                "add an empty rule `{}` if you want it be triggered for every request",
            )
        elif spec.provider is None or not spec.provider.name:
            errs.add("spec.provider.name", "`provider.name` must not be empty")
        for i, rule in enumerate(spec.rules):
            for j, f in enumerate(rule.from_):
                src = f.source
                if src is None:
                    continue
                for field in (
                    "namespaces",
                    "notNamespaces",
                    "principals",
                    "notPrincipals",
                    "requestPrincipals",
                    "notRequestPrincipals",
                ):
                    if getattr(src, field):
                        name = "From." + field[0].upper() + field[1:]
                        errs.add(
                            f"spec.rules[{i}].from[{j}].source.{field}",
                            f"{name} is currently not supported with CUSTOM action",
                        )
            for j, c in enumerate(rule.when):
                if c.key in ("source.namespace", "source.principal") or c.key.startswith(
                    "request.auth."
                ):
                    errs.add(
                        f"spec.rules[{i}].when[{j}].key",
                        f"{c.key} is currently not supported with CUSTOM action",
                    )
    if spec.provider is not None and action != "CUSTOM":
        errs.add("spec.provider", f"`provider` must not be with non CUSTOM action, found {action}")
    if action == "DENY" and not spec.rules:
        errs.add(
            "spec.rules",
            "DENY action without `rules` is meaningless as it will never be triggered, "
            "add an empty rule `{}` if you want it be triggered for every request",
        )
    for i, rule in enumerate(spec.rules):
        rpath = f"spec.rules[{i}]"
        if "from_" in rule.model_fields_set and not rule.from_:
            errs.add(f"{rpath}.from", f"`from` must not be empty, found at rule {i}")
        for j, f in enumerate(rule.from_):
            fpath = f"{rpath}.from[{j}]"
            src = f.source
            if src is None:
                errs.add(f"{fpath}.source", f"`from.source` must not be nil, found at rule {i}")
                continue
            spath = f"{fpath}.source"
            if not any(getattr(src, k) for k in _SOURCE_FIELDS):
                errs.add(spath, f"`from.source` must not be empty, found at rule {i}")
            if src.serviceAccounts and (src.namespaces or src.principals):
                errs.add(spath, "Cannot set serviceAccounts with namespaces or principals")
            for field in _SOURCE_FIELDS:
                values = getattr(src, field)
                if any(v == "" for v in values):
                    errs.add(
                        f"{spath}.{field}",
                        f"empty value not allowed, found in {field[0].upper()}{field[1:]}",
                    )
            for field in ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks"):
                for reason in _ip_errors(getattr(src, field)):
                    errs.add(f"{spath}.{field}", reason)
            for field in ("serviceAccounts", "notServiceAccounts"):
                for reason in _service_account_errors(field, getattr(src, field)):
                    errs.add(f"{spath}.{field}", reason)
        if "to" in rule.model_fields_set and not rule.to:
            errs.add(f"{rpath}.to", f"`to` must not be empty, found at rule {i}")
        for j, t in enumerate(rule.to):
            tpath = f"{rpath}.to[{j}]"
            op = t.operation
            if op is None:
                errs.add(f"{tpath}.operation", f"`to.operation` must not be nil, found at rule {i}")
                continue
            opath = f"{tpath}.operation"
            if not any(getattr(op, k) for k in _OPERATION_FIELDS):
                errs.add(opath, f"`to.operation` must not be empty, found at rule {i}")
            for field in ("ports", "notPorts"):
                for reason in _port_errors(getattr(op, field)):
                    errs.add(f"{opath}.{field}", reason)
            for field in _OPERATION_FIELDS:
                if any(v == "" for v in getattr(op, field)):
                    errs.add(
                        f"{opath}.{field}",
                        f"empty value not allowed, found in {field[0].upper()}{field[1:]}",
                    )
            for field in ("paths", "notPaths"):
                errs.add(
                    f"{opath}.{field}",
                    _path_template_error(field[0].upper() + field[1:], getattr(op, field)),
                )
        for j, c in enumerate(rule.when):
            _condition(errs, f"{rpath}.when[{j}]", c)


# --- RequestAuthentication -------------------------------------------------------------------


def jwks_uri_error(uri: str) -> str | None:
    """Istio ParseJwksURI: an http or https URL."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        return f"invalid jwksUri {uri!r}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f'URI scheme "{parts.scheme}" is not supported'
    if not parts.hostname:
        return f"invalid jwksUri {uri!r}: missing host"
    if port is not None and not 1 <= port <= 65535:
        return f"invalid jwksUri {uri!r}: port out of range"
    return None


def jwks_error(jwks: str) -> str | None:
    """Istio parses inline JWKS with a JWK library; here: JSON with a ``keys`` list (or one key)."""
    try:
        data = json.loads(jwks)
    except json.JSONDecodeError as exc:
        return f"jwks parse error: {exc.msg}"
    if isinstance(data, dict) and (isinstance(data.get("keys"), list) or "kty" in data):
        return None
    return 'jwks parse error: expected a JSON Web Key Set with a "keys" list'


def validate_request_authentication(
    ra: RequestAuthentication, errs: Errors, namespace: str
) -> None:
    spec = ra.spec
    check_policy_target(errs, spec.selector, spec.targetRef, spec.targetRefs)
    if spec.targetRef is not None or spec.targetRefs:
        errs.warn(
            "spec.targetRefs" if spec.targetRefs else "spec.targetRef",
            "not supported yet: policies attached to a Service or Gateway are for waypoints and "
            "Gateway API gateways; this policy applies to no Pilotfish proxy",
        )
    for i, rule in enumerate(spec.jwtRules):
        path = f"spec.jwtRules[{i}]"
        if rule.timeout is not None:
            errs.warn(
                f"{path}.timeout",
                f"{NOT_APPLIED}: the control plane fetches the keys with its own timeout",
            )
        if not rule.issuer:
            errs.add(f"{path}.issuer", "issuer must be set")
        for j, aud in enumerate(rule.audiences):
            if not aud:
                errs.add(f"{path}.audiences[{j}]", "audience must be non-empty string")
        if rule.jwksUri:
            errs.add(f"{path}.jwksUri", jwks_uri_error(rule.jwksUri))
        if rule.jwks:
            errs.add(f"{path}.jwks", jwks_error(rule.jwks))
        if rule.jwks and rule.jwksUri:
            errs.add(path, "only one of jwks or jwksUri may be set")
        for j, h in enumerate(rule.fromHeaders):
            if not h.name:
                errs.add(
                    f"{path}.fromHeaders[{j}].name", "location header name must be non-empty string"
                )
        for j, q in enumerate(rule.fromParams):
            if not q:
                errs.add(f"{path}.fromParams[{j}]", "location query must be non-empty string")
        for j, c in enumerate(rule.fromCookies):
            if not c:
                errs.add(f"{path}.fromCookies[{j}]", "cookie name must be non-empty string")
        for j, ch in enumerate(rule.outputClaimToHeaders):
            cpath = f"{path}.outputClaimToHeaders[{j}]"
            if not ch.claim or not ch.header:
                errs.add(
                    cpath, "outputClaimToHeaders header and claim value must be non-empty string"
                )
                continue
            errs.add(f"{cpath}.header", header_name_error(ch.header))
        if rule.outputPayloadToHeader:
            errs.add(f"{path}.outputPayloadToHeader", header_name_error(rule.outputPayloadToHeader))
        errs.add(f"{path}.timeout", duration_error(rule.timeout))
