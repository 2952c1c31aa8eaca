"""The WorkloadGroup probe: parsing with Kubernetes' defaults, thresholds, the condition."""

from __future__ import annotations

import pytest

from pilotfish.agent.workload_health import HealthState
from pilotfish.api.probe import Probe, ProbeError
from pilotfish.registry.autoregister import with_health_condition


def test_parse_defaults_and_fields() -> None:
    p = Probe.parse({"httpGet": {"port": 8080}}, default_host="10.0.0.5")
    assert (p.kind, p.host, p.path, p.scheme) == ("httpGet", "10.0.0.5", "/", "HTTP")
    assert (p.initial_delay, p.period, p.timeout) == (0, 10, 1)
    assert (p.success_threshold, p.failure_threshold) == (1, 3)
    p = Probe.parse(
        {
            "httpGet": {
                "path": "/ready",
                "port": 8443,
                "host": "127.0.0.9",
                "scheme": "https",
                "httpHeaders": [{"name": "X-A", "value": "b"}],
            },
            "periodSeconds": 2,
            "successThreshold": 2,
        }
    )
    assert (p.host, p.path, p.scheme, p.headers) == (
        "127.0.0.9",
        "/ready",
        "HTTPS",
        (("X-A", "b"),),
    )
    assert (p.period, p.success_threshold) == (2, 2)
    assert Probe.parse({"exec": {"command": ["true"]}}).command == ("true",)
    assert Probe.parse({"tcpSocket": {"port": 22}}).kind == "tcpSocket"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({}, "probe"),
        ({"httpGet": {"port": 1}, "exec": {"command": ["x"]}}, "probe"),
        ({"httpGet": {}}, "probe.httpGet.port"),
        ({"exec": {"command": []}}, "probe.exec.command"),
        ({"tcpSocket": {"port": 1}, "periodSeconds": -1}, "probe.periodSeconds"),
        ({"httpGet": {"port": 1, "scheme": "FTP"}}, "probe.httpGet.scheme"),
    ],
)
def test_parse_refuses_naming_the_field(raw: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ProbeError, match=f"^{field}:"):
        Probe.parse(raw)


def test_thresholds_decide_changes() -> None:
    state = HealthState(Probe.parse({"tcpSocket": {"port": 1}, "successThreshold": 2}))
    assert not state.record("")  # one success of two
    assert state.record("") and state.healthy is True
    assert not state.record("refused") and not state.record("refused")
    assert state.record("refused") and state.healthy is False and state.message == "refused"
    assert not state.record("refused")  # no change
    assert not state.record("")
    assert state.record("") and state.healthy is True


def test_health_condition_replaces_only_healthy() -> None:
    status = {"conditions": [{"type": "Other", "status": "True"}]}
    out = with_health_condition(status, False, "HTTP status 503")
    assert [c["type"] for c in out["conditions"]] == ["Other", "Healthy"]
    assert out["conditions"][1]["status"] == "False"
    assert out["conditions"][1]["message"] == "HTTP status 503"
    back = with_health_condition(out, True, "")
    assert [c["status"] for c in back["conditions"]] == ["True", "True"]
    assert "message" not in back["conditions"][1]
