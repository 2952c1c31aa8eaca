"""Flagger's Canary and MetricTemplate: Flagger's own checks, and what Pilotfish runs.

Pilotfish runs a Canary the way Flagger runs one for Istio (see :mod:`pilotfish.canary`).
Everything else Flagger knows is refused here with its field path and the reason, so nothing
is accepted and then silently ignored: other providers, ingress/Gateway API/upstream
references, alerts, session affinity, progressive promotion, DaemonSet targets. The one
exception is ``autoscalerRef``, accepted with a warning (there is no autoscaler here).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pilotfish.api.flagger import (
    BUILTIN_METRICS,
    Canary,
    CanaryAnalysis,
    MetricTemplate,
    unknown_placeholders,
)
from pilotfish.config.validation.common import (
    Errors,
    duration_error,
    is_dns1123_label,
    name_error,
    port_error,
)
from pilotfish.config.validation.destinationrule import traffic_policy
from pilotfish.config.validation.virtualservice import (
    check_gateway_names,
    http_cors,
    http_headers,
    http_match,
    http_retries,
)

#: The providers Pilotfish runs a Canary with (Flagger's ``provider``).
PROVIDERS = ("istio",)
NOT_RUN = "Pilotfish does not run this"


def _url_error(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f'Invalid value: "{url}": must be an http:// or https:// URL with a host'
    return None


def validate_canary(canary: Canary, errs: Errors, namespace: str) -> None:
    spec = canary.spec
    if spec.provider is not None and spec.provider not in PROVIDERS:
        errs.add(
            "spec.provider",
            f'Unsupported value: "{spec.provider}": supported values: "istio" '
            "(Pilotfish is the mesh; other providers are not run)",
        )
    if spec.metricsServer is not None:
        errs.add("spec.metricsServer", _url_error(spec.metricsServer))
    target = spec.targetRef
    if target.kind not in (None, "Deployment"):
        errs.add(
            "spec.targetRef.kind",
            f'Unsupported value: "{target.kind}": supported values: "Deployment"',
        )
    if target.apiVersion not in (None, "apps/v1"):
        errs.add(
            "spec.targetRef.apiVersion",
            f'Unsupported value: "{target.apiVersion}": supported values: "apps/v1"',
        )
    errs.add("spec.targetRef.name", name_error(target.name, "subdomain"))
    if target.namespace not in (None, namespace):
        errs.add("spec.targetRef.namespace", "Invalid value: must be the Canary's namespace")
    if spec.autoscalerRef is not None:
        errs.warn(
            "spec.autoscalerRef",
            "accepted but not used: Pilotfish has no autoscaler, the primary keeps the "
            "target's replicas",
        )
    for field in ("ingressRef", "routeRef", "upstreamRef"):
        if getattr(spec, field) is not None:
            errs.add(f"spec.{field}", f"{NOT_RUN}: Pilotfish routes with Istio VirtualServices")
    if spec.revertOnDeletion:
        errs.add("spec.revertOnDeletion", f"{NOT_RUN} yet: a deleted Canary leaves its objects")
    if spec.progressDeadlineSeconds is not None and spec.progressDeadlineSeconds <= 0:
        errs.add("spec.progressDeadlineSeconds", "Invalid value: must be greater than 0")
    _service(canary, errs)
    if spec.analysis is not None and spec.canaryAnalysis is not None:
        errs.add("spec.canaryAnalysis", "Invalid value: set either analysis or canaryAnalysis")
    if spec.analysis is None and spec.canaryAnalysis is None:
        errs.add("spec.analysis", "Required value")
        return
    field = "analysis" if spec.analysis is not None else "canaryAnalysis"
    _analysis(spec.the_analysis, errs, f"spec.{field}", bool(spec.skipAnalysis))


def _service(canary: Canary, errs: Errors) -> None:
    svc = canary.spec.service
    path = "spec.service"
    if svc.name is not None and not is_dns1123_label(svc.name):
        errs.add(f"{path}.name", name_error(svc.name, "dns1035"))
    errs.add(f"{path}.port", port_error(svc.port))
    if isinstance(svc.targetPort, int):
        errs.add(f"{path}.targetPort", port_error(svc.targetPort))
    if svc.portDiscovery:
        errs.add(f"{path}.portDiscovery", f"{NOT_RUN} yet: name the one port with port")
    errs.add(f"{path}.timeout", duration_error(svc.timeout))
    check_gateway_names(errs, f"{path}.gateways", svc.gateways)
    for field in ("gatewayRefs", "backends", "mirror"):
        if getattr(svc, field):
            errs.add(f"{path}.{field}", f"{NOT_RUN}: Pilotfish routes with Istio VirtualServices")
    for field in ("delegation", "meshName", "sessionAffinity"):
        if getattr(svc, field):
            errs.add(f"{path}.{field}", f"{NOT_RUN} yet")
    traffic_policy(errs, f"{path}.trafficPolicy", svc.trafficPolicy)
    for i, m in enumerate(svc.match):
        http_match(errs, f"{path}.match[{i}]", m)
    http_retries(errs, f"{path}.retries", svc.retries)
    http_headers(errs, f"{path}.headers", svc.headers)
    http_cors(errs, f"{path}.corsPolicy", svc.corsPolicy)


def _analysis(a: CanaryAnalysis, errs: Errors, path: str, skip: bool) -> None:
    errs.add(f"{path}.interval", duration_error(a.interval))
    if a.interval is not None and duration_error(a.interval) is None and a.interval.seconds < 1:
        errs.add(f"{path}.interval", "Invalid value: must be at least 1s")
    if a.threshold is None and not skip:
        errs.add(f"{path}.threshold", "Required value: the failed checks before a rollback")
    elif a.threshold is not None and a.threshold < 1:
        errs.add(f"{path}.threshold", "Invalid value: must be at least 1")
    weighted = bool(a.stepWeight or a.stepWeights)
    if a.iterations is not None and a.iterations < 1:
        errs.add(f"{path}.iterations", "Invalid value: must be at least 1")
    if weighted and a.iterations:
        errs.add(
            f"{path}.iterations",
            "Invalid value: iterations (A/B testing) cannot be combined with stepWeight(s)",
        )
    if not weighted and not a.iterations and not skip:
        errs.add(
            f"{path}.stepWeight",
            "Required value: set stepWeight (or stepWeights) for a weighted canary, or "
            "iterations for A/B testing",
        )
    if a.stepWeight is not None and a.stepWeights:
        errs.add(f"{path}.stepWeights", "Invalid value: set either stepWeight or stepWeights")
    if a.stepWeight is not None and not 0 < a.stepWeight <= 100:
        errs.add(f"{path}.stepWeight", "Invalid value: must be between 1 and 100")
    if a.maxWeight is not None and not 0 < a.maxWeight <= 100:
        errs.add(f"{path}.maxWeight", "Invalid value: must be between 1 and 100")
    previous = 0
    for i, w in enumerate(a.stepWeights):
        if not previous < w <= 100:
            errs.add(
                f"{path}.stepWeights[{i}]",
                "Invalid value: each weight must be greater than the previous one and at most 100",
            )
        previous = w
    if a.match and not a.iterations:
        errs.add(f"{path}.match", "Invalid value: match (A/B testing) needs iterations")
    for i, match in enumerate(a.match):
        http_match(errs, f"{path}.match[{i}]", match)
    if a.mirror and not a.iterations:
        errs.add(f"{path}.mirror", "Invalid value: mirror needs iterations (Blue/Green)")
    if a.mirrorWeight is not None:
        errs.add(f"{path}.mirrorWeight", f"{NOT_RUN} yet: mirroring copies every request")
    if a.stepWeightPromotion is not None:
        errs.add(f"{path}.stepWeightPromotion", f"{NOT_RUN} yet: promotion is in one step")
    if a.alerts:
        errs.add(f"{path}.alerts", f"{NOT_RUN}: there are no alert providers; see the events")
    if a.sessionAffinity is not None:
        errs.add(f"{path}.sessionAffinity", f"{NOT_RUN} yet")
    for field in ("primaryReadyThreshold", "canaryReadyThreshold"):
        value = getattr(a, field)
        if value is not None and not 0 < value <= 100:
            errs.add(f"{path}.{field}", "Invalid value: must be between 1 and 100")
    names: set[str] = set()
    for i, m in enumerate(a.metrics):
        mpath = f"{path}.metrics[{i}]"
        if m.name in names:
            errs.add(f"{mpath}.name", f'Duplicate value: "{m.name}"')
        names.add(m.name)
        errs.add(f"{mpath}.interval", duration_error(m.interval))
        if m.templateRef is None and m.query is None and m.name not in BUILTIN_METRICS:
            errs.add(
                f"{mpath}.templateRef",
                f'Required value: "{m.name}" is not a built-in metric '
                f"({', '.join(BUILTIN_METRICS)}); name a MetricTemplate",
            )
        if m.templateRef is not None and m.query is not None:
            errs.add(f"{mpath}.query", "Invalid value: set either query or templateRef")
        if m.query is not None:
            bad = unknown_placeholders(m.query)
            if bad:
                errs.add(f"{mpath}.query", f"Invalid value: unknown variables {bad}")
        if m.threshold is None and m.thresholdRange is None:
            errs.add(f"{mpath}.thresholdRange", "Required value: min and/or max")
        r = m.thresholdRange
        if r is not None and r.min is None and r.max is None:
            errs.add(f"{mpath}.thresholdRange", "Required value: min and/or max")
        if r is not None and r.min is not None and r.max is not None and r.min > r.max:
            errs.add(f"{mpath}.thresholdRange", "Invalid value: min is greater than max")
    hooks: set[str] = set()
    for i, h in enumerate(a.webhooks):
        hpath = f"{path}.webhooks[{i}]"
        if h.name in hooks:
            errs.add(f"{hpath}.name", f'Duplicate value: "{h.name}"')
        hooks.add(h.name)
        errs.add(f"{hpath}.url", _url_error(h.url))
        errs.add(f"{hpath}.timeout", duration_error(h.timeout))
        if h.type == "rollback":
            errs.add(f"{hpath}.type", f'{NOT_RUN} yet: "rollback" webhooks (manual rollback)')
        if h.retries is not None and h.retries < 0:
            errs.add(f"{hpath}.retries", "Invalid value: must be greater than or equal to 0")


def validate_metric_template(template: MetricTemplate, errs: Errors, namespace: str) -> None:
    provider = template.spec.provider
    if provider.type not in (None, "prometheus"):
        errs.add(
            "spec.provider.type",
            f'Unsupported value: "{provider.type}": supported values: "prometheus" '
            "(the mesh's Prometheus or one at provider.address)",
        )
    if provider.address is not None:
        errs.add("spec.provider.address", _url_error(provider.address))
    for field in ("secretRef", "headers", "region"):
        if getattr(provider, field):
            errs.add(f"spec.provider.{field}", f"{NOT_RUN} yet")
    if not template.spec.query.strip():
        errs.add("spec.query", "Required value")
    bad = unknown_placeholders(template.spec.query)
    if bad:
        errs.add(
            "spec.query",
            f"Invalid value: unknown variables {bad} (Flagger's are namespace, name, target, "
            "service, ingress, route, interval and variables.NAME)",
        )
