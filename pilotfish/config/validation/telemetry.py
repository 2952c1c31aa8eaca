"""Telemetry semantics, after Istio's ``ValidateTelemetry``."""

from __future__ import annotations

from collections.abc import Sequence

from pilotfish.api.meta import PolicyTargetReference
from pilotfish.api.profiles import INGRESS_GATEWAY
from pilotfish.api.telemetry import ProviderRef, Telemetry
from pilotfish.config.validation.common import NOT_APPLIED, Errors, duration_error
from pilotfish.config.validation.meshconfig import cel_error
from pilotfish.config.validation.security import check_policy_target


def _providers(errs: Errors, path: str, providers: Sequence[ProviderRef]) -> None:
    for i, p in enumerate(providers):
        if not p.name:
            errs.add(f"{path}[{i}].name", "providers.name may not be empty")


def _targets(
    errs: Errors, ref: PolicyTargetReference | None, refs: Sequence[PolicyTargetReference]
) -> None:
    """Warn about each target that names no Pilotfish proxy: only the ingress gateway answers
    to a ``Gateway`` reference (Service, ServiceEntry and GatewayClass targets are waypoints'
    and Gateway API gateways')."""
    named = [("spec.targetRef", ref)] if ref is not None else []
    named += [(f"spec.targetRefs[{i}]", r) for i, r in enumerate(refs)]
    for path, r in named:
        if r.kind != "Gateway" or r.name != INGRESS_GATEWAY:
            errs.warn(
                path,
                f"{NOT_APPLIED}: {r.kind} {r.name!r} is no Pilotfish proxy "
                f"(only the Gateway {INGRESS_GATEWAY!r} is)",
            )


def validate_telemetry(t: Telemetry, errs: Errors, namespace: str) -> None:
    spec = t.spec
    check_policy_target(errs, spec.selector, spec.targetRef, spec.targetRefs)
    _targets(errs, spec.targetRef, spec.targetRefs)
    if len(spec.tracing) > 1:
        errs.warn("spec.tracing", "multiple tracing is not currently supported")
    for i, tr in enumerate(spec.tracing):
        path = f"spec.tracing[{i}]"
        if len(tr.providers) > 1:
            errs.warn(f"{path}.providers", "multiple providers is not currently supported")
        _providers(errs, f"{path}.providers", tr.providers)
        if tr.useRequestIdForTraceSampling is not None:
            errs.warn(
                f"{path}.useRequestIdForTraceSampling",
                f"{NOT_APPLIED}: sampling does not depend on x-request-id",
            )
        if tr.enableIstioTags is not None:
            errs.warn(
                f"{path}.enableIstioTags",
                f"{NOT_APPLIED}: the tags Pilotfish adds to spans are always on",
            )
        rate = tr.randomSamplingPercentage
        if rate is not None and not 0 <= rate <= 100:
            errs.add(
                f"{path}.randomSamplingPercentage",
                "randomSamplingPercentage must be in range [0.0, 100.0]",
            )
        for name, tag in tr.customTags.items():
            tpath = f"{path}.customTags[{name}]"
            if not name:
                errs.add(tpath, "tag name may not be empty")
            kinds = [k for k in ("literal", "environment", "header") if getattr(tag, k)]
            if len(kinds) > 1:
                errs.add(tpath, f"only one of {', '.join(kinds)} may be set")
            if tag.literal is not None and not tag.literal.value:
                errs.add(f"{tpath}.literal.value", "literal tag value may not be empty")
            if tag.header is not None and not tag.header.name:
                errs.add(f"{tpath}.header.name", "header tag name may not be empty")
            if tag.environment is not None and not tag.environment.name:
                errs.add(f"{tpath}.environment.name", "environment tag name may not be empty")
    for i, m in enumerate(spec.metrics):
        path = f"spec.metrics[{i}]"
        _providers(errs, f"{path}.providers", m.providers)
        errs.add(f"{path}.reportingInterval", duration_error(m.reportingInterval))
        if m.reportingInterval is not None:
            errs.warn(
                f"{path}.reportingInterval",
                f"{NOT_APPLIED}: proxies report on Envoy's default interval",
            )
        for j, o in enumerate(m.overrides):
            opath = f"{path}.overrides[{j}]"
            for tag_name, to in o.tagOverrides.items():
                tpath = f"{opath}.tagOverrides[{tag_name}]"
                if not tag_name:
                    errs.warn(tpath, "tagOverrides.name may not be empty")
                operation = to.operation or "UPSERT"
                if operation == "UPSERT" and not to.value:
                    errs.add(
                        f"{tpath}.value", "tagOverrides.value must be set when operation is UPSERT"
                    )
                if operation == "UPSERT" and to.value:
                    errs.add(f"{tpath}.value", cel_error(to.value))
                if operation == "REMOVE" and to.value:
                    errs.add(
                        f"{tpath}.value",
                        "tagOverrides.value may only be set when operation is UPSERT",
                    )
            if o.match is not None:
                if o.match.metric is not None and o.match.customMetric is not None:
                    errs.add(f"{opath}.match", "only one of metric or customMetric may be set")
                if o.match.customMetric == "":
                    errs.add(f"{opath}.match.customMetric", "customMetric may not be empty")
    for i, al in enumerate(spec.accessLogging):
        path = f"spec.accessLogging[{i}]"
        _providers(errs, f"{path}.providers", al.providers)
        if al.filter is not None and not al.filter.expression:
            errs.add(f"{path}.filter.expression", "filter expression may not be empty")
        elif al.filter is not None:
            errs.add(f"{path}.filter.expression", cel_error(al.filter.expression))
