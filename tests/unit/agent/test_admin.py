"""Pure readiness and drain decisions from Envoy's admin output."""

from __future__ import annotations

from pilotfish.agent.admin import (
    active_downstream_connections,
    evaluate_readiness,
    parse_stats,
)

STATS_TEXT = """\
cluster_manager.cds.update_rejected: 0
cluster_manager.cds.update_success: 2
listener_manager.lds.update_rejected: 1
listener_manager.lds.update_success: 0
server.state: 0
cluster_manager.cds.update_duration: No recorded values
http.admin.downstream_rq_time: P0(nan,0) P25(nan,0)
"""


def test_parse_stats_keeps_counters_and_gauges_only() -> None:
    stats = parse_stats(STATS_TEXT)
    assert stats["cluster_manager.cds.update_success"] == 2
    assert stats["listener_manager.lds.update_rejected"] == 1
    assert "cluster_manager.cds.update_duration" not in stats
    assert "http.admin.downstream_rq_time" not in stats


def test_ready_when_live_and_cds_lds_received() -> None:
    # A rejected LDS still counts as received (Istio's rule): the proxy has been answered.
    result = evaluate_readiness("LIVE", parse_stats(STATS_TEXT))
    assert result.ready, result.reason


def test_live_without_config_is_not_ready() -> None:
    # What Envoy does after initial_fetch_timeout with no control plane: LIVE, zero updates.
    stats = {"cluster_manager.cds.update_success": 0, "listener_manager.lds.update_success": 0}
    result = evaluate_readiness("LIVE", stats)
    assert not result.ready
    assert "config not received" in result.reason and "cds" in result.reason


def test_lds_missing_is_named() -> None:
    result = evaluate_readiness("LIVE", {"cluster_manager.cds.update_success": 1})
    assert not result.ready
    assert "(lds)" in result.reason


def test_static_bootstrap_needs_no_xds() -> None:
    assert evaluate_readiness("LIVE", {}, require_xds=False).ready


def test_not_live_states() -> None:
    for state in ("PRE_INITIALIZING", "INITIALIZING", "DRAINING"):
        result = evaluate_readiness(state, {}, require_xds=False)
        assert not result.ready
        assert state in result.reason
    assert evaluate_readiness(None, {}).reason == "Envoy admin is not reachable"


def test_draining_is_never_ready() -> None:
    stats = parse_stats(STATS_TEXT)
    result = evaluate_readiness("LIVE", stats, draining=True)
    assert (result.ready, result.reason) == (False, "draining")


def test_active_connections_skip_admin_readiness_and_worker_copies() -> None:
    stats = parse_stats(
        """\
listener.127.0.0.1_19080.downstream_cx_active: 2
listener.127.0.0.1_19080.worker_0.downstream_cx_active: 1
listener.127.0.0.1_19080.worker_1.downstream_cx_active: 1
listener.0.0.0.0_15006.downstream_cx_active: 3
listener.admin.downstream_cx_active: 4
listener.admin.main_thread.downstream_cx_active: 4
listener.readiness.downstream_cx_active: 5
listener.readiness.worker_0.downstream_cx_active: 5
http.app.downstream_cx_active: 7
"""
    )
    assert active_downstream_connections(stats) == 5


def test_no_connections() -> None:
    assert active_downstream_connections({}) == 0
