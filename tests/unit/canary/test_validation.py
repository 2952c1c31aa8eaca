"""Canary and MetricTemplate validation: Flagger's manifests accepted, what is not run refused
by field, autoscalerRef warned."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotfish.config.validation import validate
from pilotfish.errors import ValidationError

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "flagger" / "canary.yaml"


def sample() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    return body


def errors(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as exc:
        validate(body)
    return {e.path: e.reason for e in exc.value.errors}


def test_the_sample_copied_from_flaggers_tutorial_is_valid() -> None:
    v = validate(sample())
    assert v.info.kind == "Canary" and v.warnings == ()


def test_autoscaler_ref_is_accepted_with_a_warning() -> None:
    body = sample()
    body["spec"]["autoscalerRef"] = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "name": "podinfo",
    }
    v = validate(body)
    assert [w.path for w in v.warnings] == ["spec.autoscalerRef"]
    assert "no autoscaler" in v.warnings[0].reason


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda s: s.update(provider="linkerd"), "spec.provider", 'supported values: "istio"'),
        (
            lambda s: s["targetRef"].update(kind="DaemonSet"),
            "spec.targetRef.kind",
            'supported values: "Deployment"',
        ),
        (lambda s: s.update(ingressRef={"name": "x"}), "spec.ingressRef", "does not run"),
        (
            lambda s: s["analysis"].update(alerts=[{"name": "a", "providerRef": {"name": "s"}}]),
            "spec.analysis.alerts",
            "no alert providers",
        ),
        (
            lambda s: s["analysis"].update(stepWeightPromotion=50),
            "spec.analysis.stepWeightPromotion",
            "does not run",
        ),
        (lambda s: s["analysis"].pop("threshold"), "spec.analysis.threshold", "Required"),
        (
            lambda s: s["analysis"].update(interval="5x"),
            "spec.analysis.interval",
            "invalid duration",
        ),
        (
            lambda s: s["analysis"]["metrics"].append(
                {"name": "error-rate", "thresholdRange": {"max": 1}}
            ),
            "spec.analysis.metrics[2].templateRef",
            "not a built-in metric",
        ),
        (
            lambda s: s["analysis"]["webhooks"][0].update(type="rollback"),
            "spec.analysis.webhooks[0].type",
            "does not run",
        ),
        (
            lambda s: s["analysis"].update(iterations=5),
            "spec.analysis.iterations",
            "cannot be combined",
        ),
        (
            lambda s: s["service"]["retries"].update(retryOn="bogus"),
            "spec.service.retries.retryOn",
            "not a valid retryOn",
        ),
    ],
)
def test_refused_by_field(change: Any, path: str, words: str) -> None:
    body = copy.deepcopy(sample())
    change(body["spec"])
    found = errors(body)
    assert path in found, found
    assert words in found[path]


def test_unknown_fields_are_refused_with_their_path() -> None:
    body = sample()
    body["spec"]["analysis"]["stepWieght"] = 10
    assert errors(body)["spec.analysis.stepWieght"] == 'unknown field "stepWieght"'


def test_metric_template_only_prometheus_and_known_variables() -> None:
    body = {
        "apiVersion": "flagger.app/v1beta1",
        "kind": "MetricTemplate",
        "metadata": {"name": "error-rate", "namespace": "test"},
        "spec": {
            "provider": {"type": "datadog", "address": "http://prometheus.istio-system:9090"},
            "query": 'sum(rate(x{ns="{{ namespace }}",w="{{ bogus }}"}[{{ interval }}]))',
        },
    }
    found = errors(body)
    assert 'supported values: "prometheus"' in found["spec.provider.type"]
    assert "['bogus']" in found["spec.query"]
    body["spec"]["provider"]["type"] = "prometheus"
    body["spec"]["query"] = 'sum(rate(x{w=~"{{ target }}",v="{{ variables.code }}"}[1m]))'
    assert validate(body).info.kind == "MetricTemplate"
