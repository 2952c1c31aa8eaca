"""Telemetry (telemetry.istio.io): tracing, metrics and access logging configuration."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pilotfish.api.meta import Model, PolicyTargetReference, Resource, WorkloadSelector

WorkloadMode = Literal["CLIENT_AND_SERVER", "CLIENT", "SERVER"]
MetricName = Literal[
    "ALL_METRICS",
    "REQUEST_COUNT",
    "REQUEST_DURATION",
    "REQUEST_SIZE",
    "RESPONSE_SIZE",
    "TCP_OPENED_CONNECTIONS",
    "TCP_CLOSED_CONNECTIONS",
    "TCP_SENT_BYTES",
    "TCP_RECEIVED_BYTES",
    "GRPC_REQUEST_MESSAGES",
    "GRPC_RESPONSE_MESSAGES",
]


class ProviderRef(Model):
    name: str = ""


class TracingSelector(Model):
    mode: WorkloadMode | None = None


class LiteralTag(Model):
    value: str = ""


class EnvironmentTag(Model):
    name: str = ""
    defaultValue: str | None = None


class RequestHeaderTag(Model):
    name: str = ""
    defaultValue: str | None = None


class CustomTag(Model):
    literal: LiteralTag | None = None
    environment: EnvironmentTag | None = None
    header: RequestHeaderTag | None = None


class Tracing(Model):
    match: TracingSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    randomSamplingPercentage: float | None = None
    disableSpanReporting: bool | None = None
    customTags: dict[str, CustomTag] = Field(default_factory=dict)
    useRequestIdForTraceSampling: bool | None = None
    enableIstioTags: bool | None = None


class MetricSelector(Model):
    metric: MetricName | None = None
    customMetric: str | None = None
    mode: WorkloadMode | None = None


class TagOverride(Model):
    operation: Literal["UPSERT", "REMOVE"] | None = None
    value: str | None = None


class MetricsOverrides(Model):
    match: MetricSelector | None = None
    disabled: bool | None = None
    tagOverrides: dict[str, TagOverride] = Field(default_factory=dict)


class Metrics(Model):
    providers: list[ProviderRef] = Field(default_factory=list)
    overrides: list[MetricsOverrides] = Field(default_factory=list)
    reportingInterval: str | None = None


class AccessLogSelector(Model):
    mode: WorkloadMode | None = None


class AccessLogFilter(Model):
    expression: str = ""


class AccessLogging(Model):
    match: AccessLogSelector | None = None
    providers: list[ProviderRef] = Field(default_factory=list)
    disabled: bool | None = None
    filter: AccessLogFilter | None = None


class TelemetrySpec(Model):
    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: list[PolicyTargetReference] = Field(default_factory=list)
    tracing: list[Tracing] = Field(default_factory=list)
    metrics: list[Metrics] = Field(default_factory=list)
    accessLogging: list[AccessLogging] = Field(default_factory=list)


class Telemetry(Resource):
    spec: TelemetrySpec = Field(default_factory=TelemetrySpec)
    status: dict[str, Any] | None = None
