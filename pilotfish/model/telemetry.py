"""What telemetry one proxy produces: the mesh config's defaults and the Telemetry API, merged.

Istio's scopes and order (its ``telemetry.go``): Telemetry resources in the root namespace
without a selector apply mesh-wide; in the proxy's namespace without a selector, to the
namespace; with ``selector`` (or, for the gateway, a ``targetRef(s)`` of kind ``Gateway``
naming it), to matching workloads. They are applied in that order, so the more specific wins:

- **access logging**: each entry turns its providers (or the mesh's default providers) on for
  its ``match.mode`` (client, server or both), with its ``filter``, or off with ``disabled``;
  a later entry for the same provider and mode replaces an earlier one. Without any Telemetry,
  ``accessLogFile`` (with ``accessLogEncoding``/``accessLogFormat``) turns on the ``envoy``
  provider, and ``defaultProviders.accessLogging`` the ones it names.
- **metrics**: on with the default providers (``prometheus``), per mode; ``disabled`` turns a
  provider off; ``overrides`` accumulate in scope order (a later override of the same metric
  and tag replaces an earlier one).
- **tracing**: the most specific entry's providers, ``randomSamplingPercentage``,
  ``customTags`` and ``disableSpanReporting`` override the less specific ones, field by field;
  without any, the mesh's ``enableTracing`` + ``defaultProviders.tracing`` (or the Zipkin
  address of ``defaultConfig.tracing``) at ``defaultConfig.tracing.sampling`` percent.

Pure: inputs are typed models, the output a frozen value translation reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pilotfish.api.meshconfig import ExtensionProvider, MeshConfig
from pilotfish.api.telemetry import Telemetry

__all__ = [
    "ACCESS_LOG",
    "AccessLogSpec",
    "MetricOverride",
    "ProxyTelemetry",
    "TracingSpec",
    "proxy_telemetry",
]

MODES = ("CLIENT", "SERVER")
ACCESS_LOG = "envoy"


@dataclass(frozen=True)
class AccessLogSpec:
    provider: ExtensionProvider
    #: ``CLIENT`` (outbound) or ``SERVER`` (inbound).
    mode: str
    #: CEL expression; only matching requests are logged.
    filter: str = ""
    #: ``TEXT`` or ``JSON`` (mesh ``accessLogEncoding``), and the text format when not default.
    encoding: str = "TEXT"
    format: str = ""


@dataclass(frozen=True)
class MetricOverride:
    """A ``metrics.overrides`` entry for one metric (``None``: every metric) and mode."""

    metric: str | None
    mode: str
    disabled: bool = False
    #: ``(tag, "UPSERT"|"REMOVE", CEL value)``.
    tags: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class TracingSpec:
    provider: ExtensionProvider
    sampling: float
    custom_tags: tuple[tuple[str, str, str, str], ...] = ()  # (tag, kind, name/value, default)
    disable_span_reporting: bool = False
    modes: tuple[str, ...] = MODES


@dataclass(frozen=True)
class ProxyTelemetry:
    access_logs: tuple[AccessLogSpec, ...] = ()
    #: Modes with Istio's standard metrics on (``prometheus`` provider).
    metric_modes: tuple[str, ...] = MODES
    overrides: tuple[MetricOverride, ...] = ()
    tracing: TracingSpec | None = None
    #: What was asked for and could not be honoured (named, never dropped silently).
    problems: tuple[str, ...] = field(default=())

    def metrics_on(self, mode: str) -> bool:
        return mode in self.metric_modes


@dataclass(frozen=True)
class ScopedTelemetry:
    namespace: str
    name: str
    telemetry: Telemetry


def _modes(mode: str | None) -> tuple[str, ...]:
    return MODES if mode in (None, "CLIENT_AND_SERVER") else (str(mode),)


def applies(
    t: ScopedTelemetry,
    namespace: str,
    labels: Mapping[str, str],
    root_namespace: str,
    gateway_names: Sequence[str] = (),
) -> int | None:
    """The scope rank of ``t`` for a proxy (0 mesh, 1 namespace, 2 workload), or ``None``."""
    spec = t.telemetry.spec
    refs = [r for r in [spec.targetRef, *spec.targetRefs] if r is not None]
    if t.namespace == root_namespace and spec.selector is None and not refs:
        return 0 if namespace != root_namespace else 1
    if t.namespace != namespace:
        return None
    if refs:
        names = {r.name for r in refs if r.kind == "Gateway"}
        return 2 if names & set(gateway_names) else None
    if spec.selector is None:
        return 1
    wanted = spec.selector.matchLabels
    return 2 if all(labels.get(k) == v for k, v in wanted.items()) else None


def proxy_telemetry(
    telemetries: Sequence[ScopedTelemetry],
    mesh: MeshConfig,
    namespace: str,
    labels: Mapping[str, str],
    gateway_names: Sequence[str] = (),
) -> ProxyTelemetry:
    """The telemetry of a proxy in ``namespace`` with ``labels`` (see the module docstring)."""
    scoped = sorted(
        (
            (rank, t.namespace, t.name, t.telemetry)
            for t in telemetries
            if (rank := applies(t, namespace, labels, mesh.rootNamespace, gateway_names))
            is not None
        ),
        key=lambda x: (x[0], x[1], x[2]),
    )
    problems: list[str] = []
    # -- access logging
    logs: dict[tuple[str, str], AccessLogSpec | None] = {}
    if mesh.accessLogFile:
        provider = ExtensionProvider.model_validate(
            {"name": "envoy", "envoyFileAccessLog": {"path": mesh.accessLogFile}}
        )
        for mode in MODES:
            logs[("envoy", mode)] = AccessLogSpec(
                provider, mode, "", mesh.accessLogEncoding, mesh.accessLogFormat
            )
    for name in mesh.defaultProviders.accessLogging:
        p = mesh.provider(name)
        if p is not None:
            for mode in MODES:
                logs[(name, mode)] = AccessLogSpec(
                    p, mode, "", mesh.accessLogEncoding, mesh.accessLogFormat
                )
    # -- metrics
    metric_modes = set(MODES) if mesh.defaultProviders.metrics else set()
    overrides: dict[tuple[str | None, str], MetricOverride] = {}
    # -- tracing
    tracing_provider: ExtensionProvider | None = None
    if mesh.enableTracing:
        names = mesh.defaultProviders.tracing or ["zipkin"]
        tracing_provider = mesh.provider(names[0])
    sampling = mesh.sampling
    custom: dict[str, tuple[str, str, str, str]] = {}
    disable_reporting = False
    tracing_modes: tuple[str, ...] = MODES
    for _rank, ns, name, t in scoped:
        where = f"Telemetry {ns}/{name}"
        for al in t.spec.accessLogging:
            names = [p.name for p in al.providers] or list(mesh.defaultProviders.accessLogging)
            if not names and not al.providers:
                names = ["envoy"]
            for pname in names:
                p = mesh.provider(pname)
                if p is None:
                    problems.append(f"{where}: access log provider {pname!r} is not defined")
                    continue
                for mode in _modes(al.match.mode if al.match else None):
                    logs[(pname, mode)] = (
                        None
                        if al.disabled
                        else AccessLogSpec(
                            p,
                            mode,
                            al.filter.expression if al.filter else "",
                            mesh.accessLogEncoding,
                            mesh.accessLogFormat,
                        )
                    )
        for m in t.spec.metrics:
            pnames = [p.name for p in m.providers] or list(mesh.defaultProviders.metrics)
            if pnames and "prometheus" not in pnames:
                continue
            for o in m.overrides:
                match = o.match
                metric = (match.metric or match.customMetric) if match else None
                metric = None if metric == "ALL_METRICS" else metric
                for mode in _modes(match.mode if match else None):
                    tags = tuple(
                        (tag, to.operation or "UPSERT", to.value or "")
                        for tag, to in sorted(o.tagOverrides.items())
                    )
                    previous = overrides.get((metric, mode))
                    merged = dict(
                        ((t_, (op, v)) for t_, op, v in previous.tags) if previous else ()
                    )
                    merged.update({t_: (op, v) for t_, op, v in tags})
                    overrides[(metric, mode)] = MetricOverride(
                        metric,
                        mode,
                        bool(o.disabled),
                        tuple((t_, op, v) for t_, (op, v) in sorted(merged.items())),
                    )
        for m in t.spec.metrics:
            pnames = [p.name for p in m.providers] or ["prometheus"]
            if "prometheus" in pnames and any(
                o.disabled and o.match is None and not o.tagOverrides for o in m.overrides
            ):
                metric_modes = set()
        for tr in t.spec.tracing:
            if tr.providers:
                p = mesh.provider(tr.providers[0].name)
                if p is None:
                    problems.append(
                        f"{where}: tracing provider {tr.providers[0].name!r} is not defined"
                    )
                else:
                    tracing_provider = p
            if tr.randomSamplingPercentage is not None:
                sampling = tr.randomSamplingPercentage
            if tr.disableSpanReporting is not None:
                disable_reporting = tr.disableSpanReporting
            if tr.match is not None and tr.match.mode is not None:
                tracing_modes = _modes(tr.match.mode)
            for tag, spec in tr.customTags.items():
                if spec.literal is not None:
                    custom[tag] = (tag, "literal", spec.literal.value, "")
                elif spec.environment is not None:
                    default = spec.environment.defaultValue or ""
                    custom[tag] = (tag, "environment", spec.environment.name, default)
                elif spec.header is not None:
                    custom[tag] = (tag, "header", spec.header.name, spec.header.defaultValue or "")
    tracing = None
    if tracing_provider is not None and tracing_provider.kinds[0] in ("zipkin", "opentelemetry"):
        tracing = TracingSpec(
            tracing_provider,
            sampling,
            tuple(custom[k] for k in sorted(custom)),
            disable_reporting,
            tracing_modes,
        )
    return ProxyTelemetry(
        access_logs=tuple(
            spec for _, spec in sorted(logs.items(), key=lambda kv: kv[0]) if spec is not None
        ),
        metric_modes=tuple(m for m in MODES if m in metric_modes),
        overrides=tuple(overrides[k] for k in sorted(overrides, key=lambda k: (k[0] or "", k[1]))),
        tracing=tracing,
        problems=tuple(problems),
    )
