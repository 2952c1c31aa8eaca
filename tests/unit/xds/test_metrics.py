"""What a proxy connection reports for the control plane's metrics: NACKs by type and the
convergence time of a push, measured from the change that caused it."""

from __future__ import annotations

from pilotfish.telemetry.pilot import PilotMetrics
from pilotfish.telemetry.promtext import parse
from pilotfish.xds.connection import ProxyConnection
from pilotfish.xds.push import PushRequest
from tests.unit.xds import builders as b
from tests.unit.xds.fake import FakeEnvoy, snapshot


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def values(metrics: PilotMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, s.labels): s.value for f in parse(metrics.exposition()) for s in f.samples}


def test_nacks_and_convergence_are_recorded() -> None:
    clock = Clock()
    metrics = PilotMetrics("1.2.3", connections=lambda: 2)
    conn = ProxyConnection("1", b.node(), delta=True, monotonic=clock, metrics=metrics)
    conn.set_target(snapshot({"a": 1, "b": 2}, "a"))
    envoy = FakeEnvoy(conn)
    envoy.connect()

    # A change at t=100 reaches the proxy; its last ACK comes at t=101.5.
    cds, eds = conn.begin_push(snapshot({"a": 1, "b": 2, "c": 3}, "c"), PushRequest(start=100.0))
    clock.now = 101.0
    envoy.ack(eds)
    follow = envoy.ack(cds)
    clock.now = 101.5
    envoy.sync(follow)
    assert not conn.busy

    # A rejected route.
    [rds] = conn.begin_push(snapshot({"a": 1, "b": 2, "c": 3}, {}), PushRequest(start=101.5))
    envoy.ack(rds, error="weighted_clusters: value must contain at least 1 item")

    v = values(metrics)
    assert v[("pilot_total_xds_rejects", (("type", "rds"),))] == 1
    assert v[("pilot_proxy_convergence_time_count", ())] == 2
    assert v[("pilot_proxy_convergence_time_sum", ())] == 1.5
    assert v[("pilot_proxy_convergence_time_bucket", (("le", "3.0"),))] == 2
    assert v[("pilot_proxy_convergence_time_bucket", (("le", "1.0"),))] == 1
    assert v[("pilot_xds", ())] == 2
    assert v[("istio_build", (("component", "pilot"), ("tag", "1.2.3")))] == 1


def test_counters_keep_istios_names() -> None:
    metrics = PilotMetrics("v")
    metrics.pushed("cds")
    metrics.pushed("cds")
    metrics.send_error("eds")
    metrics.sent_resources("eds", 3)
    metrics.sent_resources("eds", 0)
    metrics.internal_error()
    metrics.triggered("config")
    metrics.validated("virtualservices", True)
    metrics.validated("destinationrules", False)
    text = metrics.exposition()
    assert "# TYPE pilot_xds_pushes counter" in text
    assert 'pilot_xds_pushes{type="cds"} 2' in text
    assert 'pilot_xds_pushes{type="eds_senderr"} 1' in text
    assert 'pilotfish_xds_resources_sent{type="eds"} 3' in text
    assert "pilot_total_xds_internal_errors 1" in text
    assert 'pilot_push_triggers{type="config"} 1' in text
    assert 'galley_validation_passed{resource="virtualservices"} 1' in text
    assert (
        'galley_validation_failed{resource="destinationrules",reason="invalid_resource"} 1' in text
    )
    assert not [ln for ln in text.splitlines() if ln.split("{")[0].split(" ")[0].endswith("_total")]
    assert "_created" not in text
