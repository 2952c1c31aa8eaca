"""Flagger's progressive delivery kinds (``flagger.app/v1beta1``): Canary and MetricTemplate.

The fields are Flagger's, as its docs write them for Istio. Every field Flagger defines is
known here, so a manifest copied from Flagger's docs parses; what Pilotfish does not run (other
providers, ingress and Gateway API references, alerts, ...) is refused by field in
:mod:`pilotfish.config.validation.canary`, not by the schema. Traffic fields reuse Istio's
models (``service.match`` is a list of VirtualService ``HTTPMatchRequest``,
``service.trafficPolicy`` a DestinationRule ``TrafficPolicy``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from pilotfish.api.destinationrule import TrafficPolicy
from pilotfish.api.duration import Duration
from pilotfish.api.meta import IntOrString, Model, Resource
from pilotfish.api.virtualservice import (
    CorsPolicy,
    Headers,
    HTTPMatchRequest,
    HTTPRetry,
    HTTPRewrite,
)

#: Flagger's webhook types (``analysis.webhooks[].type``); ``rollout`` is the default.
WEBHOOK_TYPES = (
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
)
WebhookType = Literal[
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-traffic-increase",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
]

#: The metrics Flagger computes itself for Istio (no ``templateRef`` needed).
BUILTIN_METRICS = ("request-success-rate", "request-duration")

#: Canary phases, in Flagger's words.
PHASES = (
    "Initializing",
    "Initialized",
    "Waiting",
    "Progressing",
    "WaitingPromotion",
    "Promoting",
    "Finalising",
    "Succeeded",
    "Failed",
    "Terminating",
    "Terminated",
)


class CrossNamespaceObjectReference(Model):
    apiVersion: str | None = None
    kind: str | None = None
    name: str
    namespace: str | None = None


class CustomMetadata(Model):
    """Labels and annotations added to a generated object (``service.apex`` etc.)."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class CanaryService(Model):
    """``spec.service``: the ClusterIP Services and the Istio routing Flagger generates."""

    name: str | None = None
    port: int
    portName: str | None = None
    targetPort: IntOrString | None = None
    appProtocol: str | None = None
    portDiscovery: bool | None = None
    timeout: Duration | None = None
    hosts: list[str] = Field(default_factory=list)
    gateways: list[str] = Field(default_factory=list)
    gatewayRefs: list[dict[str, Any]] = Field(default_factory=list)
    delegation: bool | None = None
    trafficPolicy: TrafficPolicy | None = None
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    rewrite: HTTPRewrite | None = None
    retries: HTTPRetry | None = None
    headers: Headers | None = None
    mirror: list[dict[str, Any]] = Field(default_factory=list)
    corsPolicy: CorsPolicy | None = None
    apex: CustomMetadata | None = None
    primary: CustomMetadata | None = None
    canary: CustomMetadata | None = None
    backends: list[str] = Field(default_factory=list)
    meshName: str | None = None
    sessionAffinity: dict[str, Any] | None = None


class ThresholdRange(Model):
    min: float | None = None
    max: float | None = None


class MetricTemplateRef(Model):
    name: str
    namespace: str | None = None


class CanaryMetric(Model):
    """One check: a built-in metric by ``name``, a ``templateRef``, or an inline ``query``."""

    name: str
    interval: Duration | None = None
    threshold: float | None = None
    thresholdRange: ThresholdRange | None = None
    query: str | None = None
    templateRef: MetricTemplateRef | None = None
    templateVariables: dict[str, str] = Field(default_factory=dict)


class CanaryWebhook(Model):
    name: str
    type: WebhookType | None = None
    url: str
    muteAlert: bool | None = None
    timeout: Duration | None = None
    retries: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The type, defaulted as Flagger does (``rollout``)."""
        return self.type or "rollout"


class CanaryAlert(Model):
    name: str
    severity: str | None = None
    providerRef: CrossNamespaceObjectReference


class CanaryAnalysis(Model):
    """``spec.analysis`` (``canaryAnalysis`` in older manifests)."""

    interval: Duration | None = None
    iterations: int | None = None
    mirror: bool | None = None
    mirrorWeight: int | None = None
    maxWeight: int | None = None
    stepWeight: int | None = None
    stepWeights: list[int] = Field(default_factory=list)
    stepWeightPromotion: int | None = None
    threshold: int | None = None
    primaryReadyThreshold: int | None = None
    canaryReadyThreshold: int | None = None
    alerts: list[CanaryAlert] = Field(default_factory=list)
    metrics: list[CanaryMetric] = Field(default_factory=list)
    webhooks: list[CanaryWebhook] = Field(default_factory=list)
    match: list[HTTPMatchRequest] = Field(default_factory=list)
    sessionAffinity: dict[str, Any] | None = None

    @property
    def interval_seconds(self) -> float:
        """Flagger's default interval is one minute."""
        return self.interval.seconds if self.interval is not None else 60.0

    @property
    def failure_threshold(self) -> int:
        return self.threshold if self.threshold is not None else 0

    @property
    def is_ab(self) -> bool:
        """A/B testing (or Blue/Green): a number of ``iterations`` instead of weights."""
        return bool(self.iterations) and not (self.stepWeight or self.stepWeights)

    def weights(self) -> list[int]:
        """The canary weight of each step, the last one being the maximum (promotion).

        ``stepWeights`` as written; else ``stepWeight`` increments up to ``maxWeight``
        (default 100), as Flagger steps.
        """
        if self.stepWeights:
            return list(self.stepWeights)
        step = self.stepWeight or 0
        top = self.maxWeight if self.maxWeight is not None else 100
        if step <= 0:
            return []
        out, w = [], 0
        while w < top:
            w = min(w + step, top)
            out.append(w)
        return out


class CanarySpec(Model):
    provider: str | None = None
    metricsServer: str | None = None
    targetRef: CrossNamespaceObjectReference
    autoscalerRef: CrossNamespaceObjectReference | None = None
    ingressRef: CrossNamespaceObjectReference | None = None
    routeRef: CrossNamespaceObjectReference | None = None
    upstreamRef: CrossNamespaceObjectReference | None = None
    service: CanaryService
    analysis: CanaryAnalysis | None = None
    canaryAnalysis: CanaryAnalysis | None = None
    progressDeadlineSeconds: int | None = None
    skipAnalysis: bool | None = None
    revertOnDeletion: bool | None = None
    suspend: bool | None = None

    @property
    def the_analysis(self) -> CanaryAnalysis:
        """``analysis``, or the older ``canaryAnalysis``, or Flagger's defaults."""
        return self.analysis or self.canaryAnalysis or CanaryAnalysis()

    @property
    def deadline_seconds(self) -> int:
        return self.progressDeadlineSeconds if self.progressDeadlineSeconds is not None else 600


class Canary(Resource):
    spec: CanarySpec
    #: Written by the canary controller (phase, weight, failed checks, the steps measured).
    status: dict[str, Any] | None = None

    def apex_name(self) -> str:
        """The Service every client calls: ``service.name`` or the target's name."""
        return self.spec.service.name or self.spec.targetRef.name


class MetricTemplateProvider(Model):
    type: str | None = None
    address: str | None = None
    secretRef: dict[str, Any] | None = None
    insecureSkipVerify: bool | None = None
    region: str | None = None
    headers: dict[str, Any] | None = None


class MetricTemplateSpec(Model):
    provider: MetricTemplateProvider = Field(default_factory=MetricTemplateProvider)
    query: str


class MetricTemplate(Resource):
    spec: MetricTemplateSpec


# --- query templates -------------------------------------------------------------------------

#: ``{{ name }}`` (or ``{{ .name }}``, ``{{ variables.key }}``) in a MetricTemplate query.
PLACEHOLDER = re.compile(r"\{\{-?\s*\.?([A-Za-z_][A-Za-z0-9_.]*)\s*-?\}\}")
#: The names Flagger fills in a query.
TEMPLATE_NAMES = ("name", "namespace", "target", "service", "ingress", "route", "interval")


def unknown_placeholders(query: str) -> list[str]:
    """Placeholders of ``query`` Flagger does not define (``variables.*`` are the canary's)."""
    return [
        m
        for m in PLACEHOLDER.findall(query)
        if m not in TEMPLATE_NAMES and not m.startswith("variables.")
    ]


def render_query(query: str, values: dict[str, str], variables: dict[str, str]) -> str:
    """``query`` with its placeholders filled; KeyError names a variable that is not given."""

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("variables."):
            return variables[name.removeprefix("variables.")]
        return values[name]

    return PLACEHOLDER.sub(fill, query)
