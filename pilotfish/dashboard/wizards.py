"""The dashboard's wizards: the Istio resources they write for a service. Pure.

Each wizard writes one VirtualService named after the service (as Kiali's wizards do), whose
host is the service's short name; traffic shifting also writes a DestinationRule with one
subset per version when no DestinationRule defines the subsets it needs. The dashboard shows
the YAML, applies it server-side with ``dryRun`` first, then for real, through the control
plane's API (so validation and its messages are the API's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

VS_API = "networking.istio.io/v1"
WIZARDS = ("traffic-shifting", "fault-injection", "request-timeouts")
#: Labels the wizard's resources carry so they can be told apart.
CREATED_BY = {"pilotfish.io/created-by": "dashboard"}


class WizardError(ValueError):
    """A wizard's input cannot make valid resources; the message names the field."""


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": dict(CREATED_BY)}


def _number(spec: Mapping[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    raw = spec.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise WizardError(f"{key}: must be a number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise WizardError(f"{key}: must be between {lo:g} and {hi:g}, not {value:g}")
    return value


def traffic_shifting(
    service: str,
    namespace: str,
    weights: Mapping[str, Any],
    *,
    subsets_defined: Sequence[str] = (),
    versions: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """A VirtualService splitting ``service`` by subset weight (weights sum to 100).

    ``subsets_defined``: the subsets a DestinationRule already defines for the service;
    ``versions``: subset name -> pod labels, used to write a DestinationRule when a weighted
    subset is not defined yet."""
    routes: list[dict[str, Any]] = []
    total = 0
    for subset, raw in weights.items():
        try:
            weight = int(raw)
        except (TypeError, ValueError):
            raise WizardError(f"weights.{subset}: must be an integer, not {raw!r}") from None
        if not 0 <= weight <= 100:
            raise WizardError(f"weights.{subset}: must be between 0 and 100, not {weight}")
        total += weight
        if weight > 0:  # a subset at 0% is left out of the route
            routes.append({"destination": {"host": service, "subset": subset}, "weight": weight})
    if not weights:
        raise WizardError("weights: give at least one subset")
    if total != 100:
        raise WizardError(f"weights: must add up to 100, not {total}")
    out: list[dict[str, Any]] = []
    missing = [r["destination"]["subset"] for r in routes if r["destination"]["subset"]
               not in subsets_defined]  # fmt: skip
    if missing:
        versions = versions or {}
        unknown = [s for s in missing if s not in versions]
        if unknown:
            raise WizardError(
                f"weights: no DestinationRule defines subset {', '.join(unknown)} of {service} "
                "and no workload of the service has that version label"
            )
        out.append(
            {
                "apiVersion": VS_API,
                "kind": "DestinationRule",
                "metadata": _meta(service, namespace),
                "spec": {
                    "host": service,
                    "subsets": [
                        {"name": s, "labels": dict(versions[s])}
                        for s in sorted({*subsets_defined, *missing} & set(versions))
                    ],
                },
            }
        )
    out.append(
        {
            "apiVersion": VS_API,
            "kind": "VirtualService",
            "metadata": _meta(service, namespace),
            "spec": {"hosts": [service], "http": [{"route": routes}]},
        }
    )
    return out


def fault_injection(service: str, namespace: str, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A VirtualService injecting an abort (HTTP status, percent) and/or a fixed delay."""
    fault: dict[str, Any] = {}
    abort_pct = _number(spec, "abortPercent", 0, 100, 0)
    if abort_pct > 0:
        status = int(_number(spec, "abortStatus", 200, 599, 503))
        fault["abort"] = {"httpStatus": status, "percentage": {"value": abort_pct}}
    delay_pct = _number(spec, "delayPercent", 0, 100, 0)
    if delay_pct > 0:
        delay_ms = int(_number(spec, "delayMs", 1, 3_600_000, 1000))
        fault["delay"] = {"fixedDelay": f"{delay_ms}ms", "percentage": {"value": delay_pct}}
    if not fault:
        raise WizardError("abortPercent or delayPercent: give at least one above 0")
    return [_single_route(service, namespace, {"fault": fault})]


def request_timeouts(service: str, namespace: str, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A VirtualService with a request timeout and/or retries."""
    extra: dict[str, Any] = {}
    timeout = _number(spec, "timeoutSeconds", 0, 86400, 0)
    if timeout > 0:
        extra["timeout"] = f"{timeout:g}s"
    attempts = int(_number(spec, "attempts", 0, 100, 0))
    if attempts > 0:
        retries: dict[str, Any] = {"attempts": attempts}
        per_try = _number(spec, "perTryTimeoutSeconds", 0, 86400, 0)
        if per_try > 0:
            retries["perTryTimeout"] = f"{per_try:g}s"
        retry_on = str(spec.get("retryOn") or "").strip()
        if retry_on:
            retries["retryOn"] = retry_on
        extra["retries"] = retries
    if not extra:
        raise WizardError("timeoutSeconds or attempts: give at least one above 0")
    return [_single_route(service, namespace, extra)]


def _single_route(service: str, namespace: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": VS_API,
        "kind": "VirtualService",
        "metadata": _meta(service, namespace),
        "spec": {
            "hosts": [service],
            "http": [{**extra, "route": [{"destination": {"host": service}}]}],
        },
    }


def build(
    wizard: str,
    service: str,
    namespace: str,
    spec: Mapping[str, Any],
    *,
    subsets_defined: Sequence[str] = (),
    versions: Mapping[str, Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    if not service or not namespace:
        raise WizardError("service and namespace: both are required")
    if wizard == "traffic-shifting":
        weights = spec.get("weights")
        if not isinstance(weights, Mapping):
            raise WizardError("weights: must map subset names to percentages")
        return traffic_shifting(
            service, namespace, weights, subsets_defined=subsets_defined, versions=versions
        )
    if wizard == "fault-injection":
        return fault_injection(service, namespace, spec)
    if wizard == "request-timeouts":
        return request_timeouts(service, namespace, spec)
    raise WizardError(f"wizard: must be one of {', '.join(WIZARDS)}, not {wizard!r}")


def to_yaml(resources: Sequence[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(r) for r in resources], sort_keys=False)
