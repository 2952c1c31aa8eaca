"""``pilotfish proxy`` option handling (no process is started here)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pilotfish.agent.agent import supervisor_settings
from pilotfish.cli.proxy_cmd import build_settings, proxy


def test_defaults_for_a_captured_sidecar(tmp_path: Path) -> None:
    s = build_settings(
        pod_name="reviews-v1", labels=["app=reviews", "version=v1"], work_dir=tmp_path
    )
    node = s.node
    assert node.proxy_type == "sidecar"
    assert node.interception_mode == "REDIRECT"
    assert node.labels == {"app": "reviews", "version": "v1"}
    assert node.outbound_port is None
    assert str(s.discovery_address) == "127.0.0.1:15012"
    assert s.xds_tls is None  # loopback control plane: plaintext allowed
    assert (s.admin_port, s.readiness_port, s.agent_port) == (15000, 15021, 15020)
    assert s.xds_api == "delta"


def test_explicit_mode_ports_and_app(tmp_path: Path) -> None:
    s = build_settings(
        interception_mode="NONE",
        inbound_ports=["9080:29080"],
        app_command=["python", "app.py"],
        xds_api="sotw",
        work_dir=tmp_path,
    )
    assert s.node.outbound_port == 15001
    assert s.node.inbound_ports == {9080: 29080}
    assert s.app_command == ("python", "app.py")
    assert s.xds_api == "sotw"


def test_envoy_user_reaches_the_supervisor(tmp_path: Path) -> None:
    s = build_settings(envoy_user="istio-proxy", work_dir=tmp_path)
    assert s.envoy_user == "istio-proxy"
    assert supervisor_settings(s).user == "istio-proxy"


def test_router_defaults_to_istio_gateway_ports(tmp_path: Path) -> None:
    s = build_settings(proxy_type="router", pod_name="gw", work_dir=tmp_path)
    assert s.node.proxy_type == "router"
    assert s.node.interception_mode == "NONE"
    assert s.node.gateway_ports == {80: 8080, 443: 8443}
    assert s.node.outbound_port is None
    s = build_settings(proxy_type="router", gateway_ports=["80:18080"], work_dir=tmp_path)
    assert s.node.gateway_ports == {80: 18080}


def test_tls_with_ca_file(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    s = build_settings(discovery_address="cp.example:15012", ca_file=ca, work_dir=tmp_path)
    assert s.xds_tls is not None and s.xds_tls.ca_file == ca


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"discovery_address": "10.0.0.1:15012"}, "--ca-file PATH"),
        ({"plaintext": True, "ca_file": Path("ca")}, "exclude each other"),
        ({"outbound_port": 1234}, "--interception-mode NONE"),
        ({"gateway_ports": ["80:8080"]}, "--type router"),
        ({"app_command": ["sleep", "1"]}, "explicit mode"),
        ({"labels": ["novalue"]}, "KEY=VALUE"),
        ({"interception_mode": "NONE", "inbound_ports": ["9080"]}, "PORT:PORT"),
        ({"discovery_address": "nope"}, "host:port"),
    ],
)
def test_usage_errors_name_the_option(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(click.UsageError, match=message):
        build_settings(**kwargs)  # type: ignore[arg-type]


def test_help_teaches_the_options() -> None:
    result = CliRunner().invoke(proxy, ["--help"])
    assert result.exit_code == 0
    for option in ("--discovery-address", "--inbound-port", "--gateway-port", "--xds-api"):
        assert option in result.output


def test_cli_reports_bad_label_without_starting() -> None:
    result = CliRunner().invoke(proxy, ["--label", "oops"])
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output
