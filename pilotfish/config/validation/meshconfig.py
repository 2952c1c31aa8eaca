"""IstioOperator / MeshConfig semantics, and what Telemetry needs from the mesh config.

What Pilotfish acts on is checked as Istio checks it; everything else an ``IstioOperator`` may
carry (install profiles, ``components``, ``values``, mesh settings Pilotfish does not implement)
is kept and named in a warning, never silently dropped. CEL expressions (Telemetry filters and
tag values) are parsed here so a bad one is refused at apply, with its field.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import pydantic

from pilotfish.api.destinationrule import OutlierDetection
from pilotfish.api.meshconfig import (
    BUILTIN_PROVIDERS,
    PROVIDER_KINDS,
    VALUES_MESH_KEYS,
    VALUES_PILOT_ENV_KEYS,
    ExtensionProvider,
    IstioOperator,
    MeshConfig,
    mesh_config_of_values,
    parse_cidrs,
)
from pilotfish.api.profiles import PROFILES, VALUES_COMPONENT_KEYS
from pilotfish.api.security import AuthorizationPolicySpec
from pilotfish.api.telemetry import ProviderRef, Telemetry
from pilotfish.config.validation.common import Errors, duration_error
from pilotfish.config.validation.destinationrule import locality_lb
from pilotfish.errors import FieldError

__all__ = [
    "cel_error",
    "custom_provider_warnings",
    "telemetry_provider_errors",
    "validate_istio_operator",
]

#: What each Telemetry section may use, by provider kind.
SECTION_KINDS = {
    "tracing": ("zipkin", "opentelemetry"),
    "metrics": ("prometheus",),
    "accessLogging": ("envoyFileAccessLog", "envoyOtelAls"),
}
# What each MeshConfig field does is in the field table (coverage.py), which also names at
# apply the declared fields Pilotfish does not act on; undeclared ones are warned below.


@lru_cache(maxsize=512)
def cel_error(expression: str) -> str | None:
    """Why ``expression`` is not valid CEL (``None`` when it parses)."""
    import celpy  # only when there is an expression to check: it is a large import

    try:
        celpy.Environment().compile(expression)
    except Exception as exc:  # celpy raises its own parse errors: the text and a caret line
        lines = str(exc).rstrip().splitlines()
        caret = lines[-1].find("^") if lines and lines[-1].strip() == "^" else -1
        where = f"syntax error at column {caret + 1}" if caret >= 0 else (lines or ["?"])[0]
        return f"invalid CEL expression {expression!r}: {where}"
    return None


#: What ``pilotfish install`` acts on beside the mesh config (see :mod:`pilotfish.api.profiles`).
INSTALL_FIELDS = ("profile", "components", "addonComponents")


def _leaves(tree: dict[str, object], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in VALUES_MESH_KEYS:
            yield from _leaves(value, path + ".")
        else:
            yield path


def validate_istio_operator(op: IstioOperator, errs: Errors, namespace: str) -> None:
    spec = op.spec
    if spec.profile is not None and spec.profile not in PROFILES:
        known = ", ".join(PROFILES)
        errs.add("spec.profile", f'unknown profile "{spec.profile}" (profiles: {known})')
    for field in INSTALL_FIELDS:
        if getattr(spec, field) is not None:
            errs.warn(
                f"spec.{field}",
                "takes effect only through `pilotfish install -f` (components and profile "
                "defaults; apply stores it and applies its meshConfig and values)",
            )
    for field in ("hub", "tag", "revision"):
        if getattr(spec, field) is not None:
            errs.warn(f"spec.{field}", "not applied: Pilotfish runs its own components")
    for extra in sorted(spec.model_extra or {}):
        errs.warn(f"spec.{extra}", "not applied: Pilotfish does not know this field")
    for leaf in _leaves(spec.values or {}):
        if leaf in VALUES_COMPONENT_KEYS:
            errs.warn(f"spec.values.{leaf}", "chooses a component only through `pilotfish install`")
        elif leaf in VALUES_PILOT_ENV_KEYS:
            _, _, name = leaf.rpartition(".")
            try:
                parse_cidrs(str((spec.values or {})["pilot"]["env"][name]))
            except ValueError as exc:
                errs.add(f"spec.values.{leaf}", str(exc))
            except (KeyError, TypeError):
                errs.add(f"spec.values.{leaf}", "expected a comma-separated list of CIDRs")
        elif leaf not in VALUES_MESH_KEYS:
            errs.warn(f"spec.values.{leaf}", "not applied by Pilotfish")
    from_values = mesh_config_of_values(spec.values)
    if from_values:
        try:
            values_mesh = MeshConfig.model_validate(from_values)
        except pydantic.ValidationError as exc:
            for e in exc.errors():
                errs.add("spec.values", f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}")
        else:
            tracing = values_mesh.defaultConfig.tracing
            if tracing is not None and not 0 <= tracing.sampling <= 100:
                errs.add(
                    "spec.values.pilot.traceSampling", "sampling must be in range [0.0, 100.0]"
                )
    mesh = spec.meshConfig
    if mesh is None:
        return
    validate_mesh_config(mesh, errs, "spec.meshConfig")


def validate_mesh_config(mesh: MeshConfig, errs: Errors, path: str) -> None:
    for extra in sorted(mesh.model_extra or {}):
        errs.warn(f"{path}.{extra}", "accepted but not applied by Pilotfish yet")
    for extra in sorted(mesh.defaultConfig.model_extra or {}):
        errs.warn(f"{path}.defaultConfig.{extra}", "accepted but not applied by Pilotfish yet")
    for field in ("concurrency", "discoveryAddress", "drainDuration",
                  "terminationDrainDuration"):  # fmt: skip
        if getattr(mesh.defaultConfig, field) is not None:
            errs.warn(f"{path}.defaultConfig.{field}", "accepted but not applied by Pilotfish yet")
    if mesh.defaultConfig.proxyMetadata:
        errs.warn(f"{path}.defaultConfig.proxyMetadata", "accepted but not applied yet")
    # Mesh-wide failover needs outlier detection in each DestinationRule: no warning here.
    locality_lb(errs, f"{path}.localityLbSetting", mesh.localityLbSetting, OutlierDetection())
    tracing = mesh.defaultConfig.tracing
    if tracing is not None and not 0 <= tracing.sampling <= 100:
        errs.add(f"{path}.defaultConfig.tracing.sampling", "sampling must be in range [0.0, 100.0]")
    names: set[str] = set()
    for i, p in enumerate(mesh.extensionProviders):
        ppath = f"{path}.extensionProviders[{i}]"
        if not p.name:
            errs.add(f"{ppath}.name", "empty extension provider name")
        elif p.name in names:
            errs.add(f"{ppath}.name", f'duplicate extension provider name "{p.name}"')
        names.add(p.name)
        if len(p.kinds) != 1:
            errs.add(ppath, f"exactly one provider type must be set ({', '.join(PROVIDER_KINDS)})")
        _ext_authz(errs, ppath, p)
        for kind in ("zipkin", "opentelemetry", "envoyOtelAls", "envoyExtAuthzHttp",
                     "envoyExtAuthzGrpc"):  # fmt: skip
            sub = getattr(p, kind)
            if sub is not None and (not sub.service or not 0 < sub.port < 65536):
                errs.add(f"{ppath}.{kind}", "service and port (1-65535) are required")
        if p.envoyOtelAls is not None:
            errs.warn(f"{ppath}.envoyOtelAls", "OpenTelemetry access logs are not sent yet")
        log_format = p.envoyFileAccessLog.logFormat if p.envoyFileAccessLog else None
        if log_format is not None and log_format.text is not None and log_format.labels:
            errs.add(f"{ppath}.envoyFileAccessLog.logFormat", "only one of text or labels")
    defaults = mesh.defaultProviders
    for section, listed in (("metrics", defaults.metrics), ("tracing", defaults.tracing),
                            ("accessLogging", defaults.accessLogging)):  # fmt: skip
        for j, name in enumerate(listed):
            problem = _provider_problem(mesh, name, section)
            if problem:
                errs.add(f"{path}.defaultProviders.{section}[{j}]", problem)


def _ext_authz(errs: Errors, path: str, p: ExtensionProvider) -> None:
    """Istio's ValidateExtensionProviderEnvoyExtAuthz{Http,Grpc}, and what is not applied."""
    for kind in ("envoyExtAuthzHttp", "envoyExtAuthzGrpc"):
        sub = getattr(p, kind)
        if sub is None:
            continue
        kpath = f"{path}.{kind}"
        if sub.statusOnError is not None:
            code = sub.statusOnError
            if not code.isdigit() or not 100 <= int(code) <= 599:
                errs.add(f"{kpath}.statusOnError", f"invalid statusOnError value {code}")
        if sub.timeout is not None:
            errs.add(f"{kpath}.timeout", duration_error(sub.timeout))
        if sub.clearRouteCache:
            errs.warn(
                f"{kpath}.clearRouteCache",
                "not applied: the route is not chosen again after the check",
            )
        if kind == "envoyExtAuthzHttp":
            if sub.pathPrefix and not sub.pathPrefix.startswith("/"):
                errs.add(f"{kpath}.pathPrefix", "pathPrefix should begin with `/`")
            if sub.includeHeadersInCheck:
                errs.warn(
                    f"{kpath}.includeHeadersInCheck",
                    "deprecated: use includeRequestHeadersInCheck (applied the same way)",
                )


def _provider_problem(mesh: MeshConfig, name: str, section: str) -> str | None:
    provider = mesh.provider(name)
    if provider is None:
        declared = [p.name for p in mesh.extensionProviders]
        return (
            f'provider "{name}" is not defined in meshConfig.extensionProviders (defined: '
            f"{', '.join(declared) or 'none'}; built-in: {', '.join(BUILTIN_PROVIDERS)})"
        )
    if not set(provider.kinds) & set(SECTION_KINDS[section]):
        return (
            f'provider "{name}" is a {"/".join(provider.kinds)} provider, not one for '
            f"{section} ({', '.join(SECTION_KINDS[section])})"
        )
    return None


def _provider_refs(t: Telemetry) -> Iterator[tuple[str, str, str]]:
    spec = t.spec
    refs: list[tuple[str, list[ProviderRef]]] = [
        *(("tracing", e.providers) for e in spec.tracing),
        *(("metrics", e.providers) for e in spec.metrics),
        *(("accessLogging", e.providers) for e in spec.accessLogging),
    ]
    index: dict[str, int] = {}
    for section, providers in refs:
        i = index.get(section, 0)
        index[section] = i + 1
        for j, ref in enumerate(providers):
            yield section, f"spec.{section}[{i}].providers[{j}].name", ref.name


def custom_provider_warnings(spec: AuthorizationPolicySpec, mesh: MeshConfig) -> list[FieldError]:
    """What a CUSTOM AuthorizationPolicy's provider does not check, against the stored mesh
    config: an ``envoyExtAuthzHttp`` provider never sees TCP connections (Istio leaves the
    policy out of TCP filter chains)."""
    if spec.action != "CUSTOM" or spec.provider is None:
        return []
    provider = mesh.provider(spec.provider.name or "")
    if provider is None or provider.envoyExtAuthzHttp is None:
        return []
    return [
        FieldError(
            "spec.provider",
            f'"{provider.name}" is an envoyExtAuthzHttp provider: it checks HTTP requests only; '
            "TCP connections to the selected workloads are not checked by it (as in Istio); "
            "use an envoyExtAuthzGrpc provider to check them",
        )
    ]


def telemetry_provider_errors(t: Telemetry, mesh: MeshConfig) -> list[FieldError]:
    """Providers a Telemetry names that the mesh config does not define (or of the wrong
    kind for their section). Cross-resource: checked at apply against the stored mesh config."""
    out = []
    for section, path, name in _provider_refs(t):
        if name:
            problem = _provider_problem(mesh, name, section)
            if problem:
                out.append(FieldError(path, problem))
    return out
