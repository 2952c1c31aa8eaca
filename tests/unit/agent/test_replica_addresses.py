"""Several control-plane replicas: --discovery-address repeated or comma-separated, the
xds-grpc cluster listing each, the launcher's argv giving them back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest

from pilotfish.agent.bootstrap import render_bootstrap
from pilotfish.agent.launch import agent_argv
from pilotfish.agent.settings import XDS_CLUSTER, HostPort
from pilotfish.cli.proxy_cmd import HOST_OPTIONS, build_settings, proxy


def _xds_cluster(bootstrap: dict[str, Any]) -> dict[str, Any]:
    clusters = bootstrap["static_resources"]["clusters"]
    return next(c for c in clusters if c["name"] == XDS_CLUSTER)


def _endpoints(cluster: dict[str, Any]) -> list[tuple[str, int]]:
    return [
        (e["endpoint"]["address"]["socket_address"]["address"],
         e["endpoint"]["address"]["socket_address"]["port_value"])
        for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]  # fmt: skip


def test_repeated_and_comma_separated_addresses(tmp_path: Path) -> None:
    ctx = proxy.make_context(
        "proxy",
        ["--discovery-address", "127.0.0.1:15012,127.0.0.1:25012",
         "--discovery-address", "127.0.0.1:35012", "--discovery-address", "127.0.0.1:15012",
         "--work-dir", str(tmp_path)],
    )  # fmt: skip
    s = build_settings(**{k: v for k, v in ctx.params.items() if k not in HOST_OPTIONS})
    assert [str(a) for a in s.discovery_addresses] == [
        "127.0.0.1:15012",
        "127.0.0.1:25012",
        "127.0.0.1:35012",
    ]
    assert s.discovery_address == HostPort("127.0.0.1", 15012)


def test_one_address_keeps_the_single_endpoint_cluster(tmp_path: Path) -> None:
    s = build_settings(work_dir=tmp_path)
    cluster = _xds_cluster(render_bootstrap(s))
    assert _endpoints(cluster) == [("127.0.0.1", 15012)]
    assert "outlier_detection" not in cluster


def test_every_replica_is_an_endpoint_of_xds_grpc(tmp_path: Path) -> None:
    s = build_settings(discovery_address=["10.0.0.1:15012", "10.0.0.2:15012"],
                       plaintext=True, work_dir=tmp_path)  # fmt: skip
    cluster = _xds_cluster(render_bootstrap(s))
    assert cluster["type"] == "STATIC"
    assert _endpoints(cluster) == [("10.0.0.1", 15012), ("10.0.0.2", 15012)]
    # A replica refusing connections is set aside; one always stays.
    assert cluster["outlier_detection"]["consecutive_local_origin_failure"] == 1
    assert cluster["outlier_detection"]["max_ejection_percent"] == 50
    # ... briefly: it is back within seconds of a restart (issue 13's R3: reconnect <= 5 s).
    assert cluster["outlier_detection"]["max_ejection_time"] == "5s"
    assert cluster["outlier_detection"]["interval"] == "1s"


def test_names_resolve_by_dns_and_tls_accepts_each_replica(tmp_path: Path) -> None:
    ca = tmp_path / "roots.pem"
    ca.write_text("x\n")
    s = build_settings(discovery_address="cp-a.example:15012,10.0.0.2:15012", ca_file=ca,
                       work_dir=tmp_path)  # fmt: skip
    cluster = _xds_cluster(render_bootstrap(s))
    assert cluster["type"] == "STRICT_DNS"
    validation = cluster["transport_socket"]["typed_config"]["common_tls_context"][
        "validation_context"
    ]
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": "cp-a.example"}},
        {"san_type": "IP_ADDRESS", "matcher": {"exact": "10.0.0.2"}},
    ]


def test_a_remote_replica_needs_tls_or_plaintext(tmp_path: Path) -> None:
    with pytest.raises(click.UsageError, match=r"10\.0\.0\.2:15012"):
        build_settings(discovery_address="127.0.0.1:15012,10.0.0.2:15012", work_dir=tmp_path)


def test_a_bad_address_in_a_list_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(click.BadParameter, match="nope"):
        build_settings(discovery_address="127.0.0.1:15012,nope", work_dir=tmp_path)


def test_the_launcher_passes_every_replica(tmp_path: Path) -> None:
    s = build_settings(discovery_address=["127.0.0.1:15012", "127.0.0.1:25012"],
                       work_dir=tmp_path)  # fmt: skip
    argv = agent_argv(s)
    ctx = proxy.make_context("proxy", argv)
    assert build_settings(**{k: v for k, v in ctx.params.items() if k not in HOST_OPTIONS}) == s
