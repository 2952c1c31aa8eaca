"""Metric queries as Flagger builds them, and Prometheus answers read."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.api.flagger import Canary, CanaryMetric
from pilotfish.canary.checks import MetricError, build_query, mesh_address, value_of


def canary(metrics_server: str | None = None) -> Canary:
    spec: dict[str, Any] = {
        "targetRef": {"name": "podinfo"},
        "service": {"port": 9898},
        "analysis": {"interval": "2s", "threshold": 1, "stepWeight": 10},
    }
    if metrics_server:
        spec["metricsServer"] = metrics_server
    return Canary.model_validate(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": spec,
        }
    )


def test_builtin_success_rate_is_flaggers_istio_query() -> None:
    m = CanaryMetric.model_validate(
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "30s"}
    )
    q = build_query(canary(), m, None)
    assert q.promql == (
        'sum(rate(istio_requests_total{reporter="destination",'
        'destination_workload_namespace="test",destination_workload=~"podinfo",'
        'response_code!~"5.*"}[30s])) / sum(rate(istio_requests_total{reporter="destination",'
        'destination_workload_namespace="test",destination_workload=~"podinfo"}[30s])) * 100'
    )
    assert q.address is None and q.judge(99.5) and not q.judge(80.0)


def test_legacy_threshold_is_a_maximum_for_duration_and_default_interval_1m() -> None:
    m = CanaryMetric.model_validate({"name": "request-duration", "threshold": 500})
    q = build_query(canary(), m, None)
    assert "[1m]" in q.promql and q.max == 500 and q.min is None
    assert q.judge(499) and not q.judge(1000)


def test_template_query_with_variables_and_address() -> None:
    m = CanaryMetric.model_validate(
        {
            "name": "not-found",
            "templateRef": {"name": "nf"},
            "thresholdRange": {"max": 5},
            "templateVariables": {"code": "404"},
        }
    )
    template = {
        "spec": {
            "provider": {"type": "prometheus", "address": "http://prom.example:9090/"},
            "query": 'x{w="{{ target }}",ns="{{namespace}}",c="{{ variables.code }}"}',
        }
    }
    q = build_query(canary(), m, template)
    assert q.promql == 'x{w="podinfo",ns="test",c="404"}'
    assert q.address == "http://prom.example:9090"
    m2 = m.model_copy(update={"templateVariables": {}})
    with pytest.raises(KeyError):
        build_query(canary(), m2, template)


def test_istios_addon_address_means_the_mesh_prometheus() -> None:
    assert mesh_address("http://prometheus.istio-system:9090") is None
    assert mesh_address("http://prometheus.istio-system.svc.cluster.local:9090") is None
    assert mesh_address("http://10.0.0.1:9090") == "http://10.0.0.1:9090"


def test_values() -> None:
    assert value_of({"resultType": "vector", "result": [{"value": [1, "99.5"]}]}) == 99.5
    assert value_of({"resultType": "scalar", "result": [1, "3"]}) == 3.0
    with pytest.raises(MetricError, match="no values"):
        value_of({"resultType": "vector", "result": []})
    with pytest.raises(MetricError, match="NaN"):
        value_of({"resultType": "vector", "result": [{"value": [1, "NaN"]}]})


def test_the_window_never_reaches_back_before_the_analysis_started() -> None:
    from pilotfish.canary.checks import window

    assert window("30s", None) == "30s"
    assert window("30s", 4.2) == "5s"
    assert window("30s", 0.1) == "1s"
    assert window("30s", 45) == "30s"
    assert window("1m", 12) == "12s"
    m = CanaryMetric.model_validate(
        {"name": "request-success-rate", "thresholdRange": {"min": 99}, "interval": "30s"}
    )
    assert "[8s]" in build_query(canary(), m, None, since_start=7.5).promql
