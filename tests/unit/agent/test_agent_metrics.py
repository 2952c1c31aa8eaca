"""The agent's /stats/prometheus body: Envoy's stats with Istio's names, the agent's own
series and the app's, each family once."""

from __future__ import annotations

import pytest

from pilotfish.agent.health import agent_families, merged_exposition
from pilotfish.agent.settings import AppMetrics
from pilotfish.cli.proxy_cmd import build_settings
from pilotfish.telemetry.promtext import parse

ENVOY = (
    "# TYPE envoy_istio_requests_total counter\n"
    'envoy_istio_requests_total{reporter="destination"} 2\n'
    "# TYPE envoy_server_live gauge\nenvoy_server_live 1\n"
)


def test_merged_body() -> None:
    app = "# TYPE orders_total counter\norders_total 5\n# TYPE istio_build gauge\nistio_build 7\n"
    text = merged_exposition(ENVOY, agent_families("0.1.0", 3, 1), app)
    fams = {f.name: f for f in parse(text)}
    assert set(fams) >= {
        "istio_requests_total",
        "envoy_server_live",
        "istio_build",
        "istio_agent_scrapes_total",
        "istio_agent_scrape_failures_total",
        "orders_total",
    }
    assert "envoy_istio_requests_total" not in fams
    (build,) = fams["istio_build"].samples
    assert dict(build.labels) == {"component": "proxy", "tag": "0.1.0"}
    assert build.value == 1
    assert fams["istio_agent_scrapes_total"].samples[0].value == 3


def test_an_app_body_that_does_not_parse_is_left_out() -> None:
    text = merged_exposition(ENVOY, agent_families("v", 1, 0), "<html>oops {</html>")
    assert "oops" not in text
    assert "istio_requests_total" in text


def test_app_metrics_options() -> None:
    settings = build_settings(app_metrics_port=9080, app_metrics_path="/stats")
    assert settings.app_metrics == AppMetrics(9080, "/stats")
    assert settings.app_metrics.url == "http://127.0.0.1:9080/stats"
    assert build_settings().app_metrics is None
    with pytest.raises(ValueError):
        AppMetrics(9080, "stats")
