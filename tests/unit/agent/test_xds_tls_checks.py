"""TLS towards the control plane, agent side: what the bootstrap verifies, and how a proxy
that cannot reach or trust the control plane explains itself (readiness reason, CA errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pilotfish.agent.admin import evaluate_readiness, xds_connection_problem
from pilotfish.agent.bootstrap import upstream_tls
from pilotfish.agent.settings import HostPort, XdsTls
from pilotfish.agent.workload_identity import ca_error_hint

CA = Path("/etc/pf/roots.pem")


def _sans(context: dict[str, Any]) -> Any:
    validation = context["typed_config"]["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"filename": str(CA)}
    return validation.get("match_typed_subject_alt_names")


@pytest.mark.parametrize(
    ("address", "san"),
    [
        ("10.244.0.1:15012", {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.244.0.1"}}),
        ("[0:0::1]:15012", {"san_type": "IP_ADDRESS", "matcher": {"exact": "::1"}}),
        ("cp.example:15012", {"san_type": "DNS", "matcher": {"exact": "cp.example"}}),
    ],
)
def test_control_plane_must_name_the_address_dialled(address: str, san: dict[str, Any]) -> None:
    assert _sans(upstream_tls(XdsTls(CA), HostPort.parse(address))) == [san]


def test_server_name_wins_over_the_address() -> None:
    tls = XdsTls(CA, server_name="pilotfish.istio-system.svc")
    context = upstream_tls(tls, HostPort.parse("10.0.0.1:15012"))
    assert _sans(context) == [
        {"san_type": "DNS", "matcher": {"exact": "pilotfish.istio-system.svc"}}
    ]
    assert context["typed_config"]["sni"] == "pilotfish.istio-system.svc"


def _xds(**counts: int) -> dict[str, int]:
    return {f"cluster.xds-grpc.{name.replace('__', '.')}": n for name, n in counts.items()}


def test_connection_problems_from_the_xds_cluster_stats() -> None:
    assert xds_connection_problem({}) == ""
    wrong_ca = xds_connection_problem(_xds(ssl__fail_verify_error=3, upstream_cx_connect_fail=3))
    assert "not signed by a CA in --ca-file" in wrong_ca
    assert "--xds-server-name" in xds_connection_problem(_xds(ssl__fail_verify_san=1))
    assert "--xds-plaintext" in xds_connection_problem(_xds(ssl__connection_error=2))
    closed = xds_connection_problem(_xds(upstream_cx_destroy_remote_with_active_rq=2))
    assert "pass --ca-file" in closed
    assert xds_connection_problem(_xds(upstream_cx_connect_fail=1)) == (
        "cannot connect to the control plane"
    )
    # A connection up now: earlier failures are history.
    assert xds_connection_problem(_xds(ssl__fail_verify_error=3, upstream_cx_active=1)) == ""


def test_readiness_reason_carries_the_cause_until_config_arrives() -> None:
    failing = _xds(ssl__fail_verify_error=1)
    early = evaluate_readiness("PRE_INITIALIZING", failing)
    assert not early.ready and early.cause and early.cause in early.reason
    assert early.reason.startswith("Envoy is PRE_INITIALIZING: TLS to the control plane failed")
    late = evaluate_readiness("LIVE", failing)
    assert late.reason.startswith("config not received from the control plane (cds): TLS")
    received = {
        "cluster_manager.cds.update_success": 1,
        "listener_manager.lds.update_success": 1,
        **failing,
    }
    assert evaluate_readiness("LIVE", received).ready
    assert evaluate_readiness("INITIALIZING", failing, require_xds=False).cause == ""


def test_ca_error_hints() -> None:
    verify = (
        "certificate request refused (UNAVAILABLE): failed to connect to all addresses; "
        "last error: UNKNOWN: ipv4:127.0.0.1:1: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
        "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED"
    )
    assert "not signed by a CA in --ca-file" in ca_error_hint(verify, tls=True)
    closed = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:x: Socket closed"
    assert "pass --ca-file" in ca_error_hint(closed, tls=False)
    assert ca_error_hint(closed, tls=True) == ""
    assert "--xds-plaintext" in ca_error_hint("... WRONG_VERSION_NUMBER ...", tls=True)
    assert "--xds-server-name" in ca_error_hint("Peer name x is not in peer certificate", True)
    assert ca_error_hint("PERMISSION_DENIED: token for another account", tls=True) == ""
