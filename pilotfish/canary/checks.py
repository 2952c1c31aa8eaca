"""What an analysis measures and calls: metric queries against Prometheus, and webhooks.

The built-in metrics are Flagger's Istio queries, over Istio's standard metrics as the mesh's
sidecars report them (``reporter="destination"``, the canary's workload):

- ``request-success-rate``: the percentage of requests not answered 5xx;
- ``request-duration``: the 99th percentile of request durations, in milliseconds.

A ``templateRef`` names a MetricTemplate whose PromQL is filled in the same way
(``{{ namespace }}``, ``{{ target }}``, ``{{ interval }}``, ``{{ variables.NAME }}``...).
A query that returns nothing (or NaN) has "no values": the check fails, as in Flagger, since
a canary that receives no traffic proves nothing.

Webhooks are POSTed Flagger's JSON payload (``name``, ``namespace``, ``phase``, ``checksum``,
``metadata``); any 2xx answer passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from pilotfish.api.duration import parse_duration
from pilotfish.api.flagger import Canary, CanaryMetric, CanaryWebhook, render_query
from pilotfish.canary.endpoints import Target

#: Flagger's queries for Istio (``flagger/pkg/metrics/observers/istio.go``).
BUILTIN_QUERIES = {
    "request-success-rate": (
        'sum(rate(istio_requests_total{reporter="destination",'
        'destination_workload_namespace="{{ namespace }}",destination_workload=~"{{ target }}",'
        'response_code!~"5.*"}[{{ interval }}])) / sum(rate(istio_requests_total{'
        'reporter="destination",destination_workload_namespace="{{ namespace }}",'
        'destination_workload=~"{{ target }}"}[{{ interval }}])) * 100'
    ),
    "request-duration": (
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket{"
        'reporter="destination",destination_workload_namespace="{{ namespace }}",'
        'destination_workload=~"{{ target }}"}[{{ interval }}])) by (le))'
    ),
}
#: Flagger's default metric interval.
DEFAULT_METRIC_INTERVAL = "1m"
#: Addresses that mean "the mesh's Prometheus" (Istio's addon names).
MESH_PROMETHEUS_HOSTS = ("prometheus.istio-system", "prometheus.istio-system.svc")
DEFAULT_WEBHOOK_TIMEOUT = 10.0


class MetricError(Exception):
    """A query that could not be run or returned no value (the message says which)."""


@dataclass(frozen=True)
class Query:
    """One metric check, ready to run."""

    name: str
    promql: str
    #: Prometheus base URL; None means the mesh's.
    address: str | None
    min: float | None
    max: float | None

    def judge(self, value: float) -> bool:
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)

    def describe_range(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts)


def mesh_address(address: str | None) -> str | None:
    """None (the mesh's Prometheus) for Istio's addon address, else ``address``."""
    if not address:
        return None
    host = urlsplit(address).hostname or ""
    if host in MESH_PROMETHEUS_HOSTS or host.startswith("prometheus.istio-system."):
        return None
    return address.rstrip("/")


def template_values(canary: Canary, interval: str) -> dict[str, str]:
    name = canary.spec.targetRef.name
    return {
        "name": canary.metadata.name,
        "namespace": canary.metadata.namespace or "default",
        "target": name,
        "service": canary.apex_name(),
        "ingress": "",
        "route": "",
        "interval": interval,
    }


def window(interval: str, since_start: float | None) -> str:
    """The metric ``interval``, cut to the time since this analysis started (whole seconds,
    at least 1 s): requests of an earlier revision of the canary workload (same
    ``destination_workload``) must not be judged as this one's. Pure."""
    if since_start is None:
        return interval
    try:
        seconds = parse_duration(interval)
    except ValueError:
        return interval
    cut = max(1, math.ceil(since_start))
    return interval if seconds <= cut else f"{cut}s"


def build_query(
    canary: Canary,
    metric: CanaryMetric,
    template: dict[str, Any] | None,
    since_start: float | None = None,
) -> Query:
    """The check of ``metric``: its PromQL (built-in, inline or from ``template``, a stored
    MetricTemplate body), address and range. KeyError names a missing template variable.
    ``since_start``: seconds since the analysis started (see :func:`window`)."""
    interval = window(str(metric.interval or DEFAULT_METRIC_INTERVAL), since_start)
    values = template_values(canary, interval)
    address = mesh_address(canary.spec.metricsServer)
    low = high = None
    if metric.thresholdRange is not None:
        low, high = metric.thresholdRange.min, metric.thresholdRange.max
    if template is not None:
        spec = template.get("spec") or {}
        text = str(spec.get("query") or "")
        address = mesh_address((spec.get("provider") or {}).get("address"))
    elif metric.query is not None:
        text = metric.query
    else:
        text = BUILTIN_QUERIES[metric.name]
        # Flagger's older `threshold`: the minimum success rate, the maximum duration.
        if metric.threshold is not None and metric.thresholdRange is None:
            if metric.name == "request-success-rate":
                low = metric.threshold
            else:
                high = metric.threshold
    promql = render_query(text, values, dict(metric.templateVariables))
    return Query(metric.name, promql, address, low, high)


class Checks(Protocol):
    """The analysis' side effects (a seam: unit tests pass a fake)."""

    async def query(self, query: Query) -> float:
        """The query's value; MetricError when it fails or has no value."""
        ...

    async def webhook(
        self, hook: CanaryWebhook, payload: dict[str, Any], target: Target
    ) -> str | None:
        """POST ``payload`` to ``target`` (``hook.url`` resolved); None when the hook passed,
        else why it failed."""
        ...


class HttpChecks:
    """Queries Prometheus' HTTP API and POSTs webhooks, with httpx."""

    def __init__(self, prometheus_url: str, timeout: float = 5.0) -> None:
        self.prometheus_url = prometheus_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        await self._client.aclose()

    async def query(self, query: Query) -> float:
        base = query.address or self.prometheus_url
        try:
            resp = await self._client.get(f"{base}/api/v1/query", params={"query": query.promql})
        except httpx.HTTPError as exc:
            raise MetricError(f"Prometheus at {base} did not answer: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise MetricError(
                f"Prometheus query failed ({resp.status_code}): {body.get('error') or resp.text}"
            )
        return value_of(body.get("data") or {})

    async def webhook(
        self, hook: CanaryWebhook, payload: dict[str, Any], target: Target
    ) -> str | None:
        timeout = hook.timeout.seconds if hook.timeout is not None else DEFAULT_WEBHOOK_TIMEOUT
        headers = {"Host": target.host} if target.host else {}
        problem = None
        for _ in range((hook.retries or 0) + 1):
            try:
                resp = await self._client.post(
                    target.url, json=payload, timeout=timeout, headers=headers
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}".rstrip(": ")
                continue
            if 200 <= resp.status_code < 300:
                return None
            problem = f"{resp.status_code} {resp.text.strip()[:200]}"
        return problem


def value_of(data: dict[str, Any]) -> float:
    """The one value of a Prometheus query answer (a vector or a scalar)."""
    kind, result = data.get("resultType"), data.get("result")
    raw: Any = None
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        raw = result[1]
    elif kind == "vector" and isinstance(result, list) and result:
        raw = (result[0].get("value") or [None, None])[1]
    if raw is None:
        raise MetricError("no values found")
    value = float(raw)
    if math.isnan(value):
        raise MetricError("no values found (NaN)")
    return value
