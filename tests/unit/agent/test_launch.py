"""The launch contract: ``agent_argv`` is the inverse of ``build_settings``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pilotfish.agent.launch import agent_argv
from pilotfish.agent.settings import (
    TLS_MODE_LABEL,
    AgentSettings,
    HostPort,
    IdentitySettings,
    XdsTls,
)
from pilotfish.api.node import NodeInfo
from pilotfish.cli.proxy_cmd import HOST_OPTIONS, build_settings, proxy


def parse(argv: list[str]) -> AgentSettings:
    """What ``pilotfish proxy ARGV`` runs with (click's parsing, then build_settings)."""
    ctx = proxy.make_context("proxy", list(argv))
    return build_settings(**{k: v for k, v in ctx.params.items() if k not in HOST_OPTIONS})


def files(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        (tmp_path / name).write_text("x\n")
        out.append(tmp_path / name)
    return out


def test_a_captured_sidecar_with_identity_round_trips(tmp_path: Path) -> None:
    ca, token = files(tmp_path, "roots.pem", "token")
    s = AgentSettings(
        node=NodeInfo(
            proxy_type="sidecar",
            ip="10.230.1.7",
            pod_name="reviews-v1-abc",
            namespace="bookinfo",
            labels={"app": "reviews", "version": "v1", TLS_MODE_LABEL: "istio"},
            service_account="bookinfo-reviews",
            workload_name="reviews-v1",
        ),
        work_dir=tmp_path / "work",
        discovery_address=HostPort.parse("10.230.1.1:15012"),
        xds_tls=XdsTls(ca, server_name="istiod.istio-system.svc"),
        identity=IdentitySettings(token_file=token, cert_ttl=timedelta(hours=2)),
        drain_seconds=2.5,
        log_level="info",
        envoy_user="pilotfish-proxy",
    )
    argv = agent_argv(s)
    assert "--plaintext" not in argv
    assert parse(argv) == s


def test_an_explicit_sidecar_with_an_app_round_trips(tmp_path: Path) -> None:
    s = AgentSettings(
        node=NodeInfo(
            proxy_type="sidecar",
            ip="127.0.0.9",
            pod_name="ratings",
            namespace="default",
            labels={"app": "ratings", TLS_MODE_LABEL: "disabled"},
            interception_mode="NONE",
            outbound_port=25001,
            inbound_ports={9080: 29080, 9443: 29443},
        ),
        work_dir=tmp_path,
        xds_api="sotw",
        initial_fetch_timeout_s=0.0,
        admin_port=25000,
        readiness_port=25021,
        agent_port=25020,
        concurrency=1,
        drain_seconds=0.0,
        log_path=tmp_path / "envoy.log",
        app_command=("python3", "ratings.py", "--port", "9080"),
        app_http_proxy_env=True,
    )
    argv = agent_argv(s)
    assert argv[-5:] == ["--", "python3", "ratings.py", "--port", "9080"]
    assert parse(argv) == s


def test_a_gateway_round_trips_with_its_default_ports_spelled_out(tmp_path: Path) -> None:
    ca, cert, key = files(tmp_path, "roots.pem", "cert.pem", "key.pem")
    s = AgentSettings(
        node=NodeInfo(
            proxy_type="router",
            ip="127.0.0.1",
            pod_name="istio-ingressgateway",
            namespace="istio-system",
            labels={"istio": "ingressgateway"},
            interception_mode="NONE",
            gateway_ports={80: 8080, 443: 8443},
            bind_address="127.0.0.1",
        ),
        work_dir=tmp_path,
        discovery_address=HostPort.parse("cp.example:15012"),
        xds_tls=XdsTls(ca, cert, key),
    )
    argv = agent_argv(s)
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--gateway-port"] == [
        "80:8080",
        "443:8443",
    ]
    assert parse(argv) == s


def test_plaintext_is_spelled_out_only_where_it_is_not_implied(tmp_path: Path) -> None:
    node = NodeInfo(proxy_type="sidecar", ip="10.0.0.2", pod_name="p", namespace="default")
    remote = AgentSettings(node=node, work_dir=tmp_path, discovery_address=HostPort("cp", 1))
    assert "--plaintext" in agent_argv(remote)
    assert parse(agent_argv(remote)) == remote
    local = AgentSettings(node=node, work_dir=tmp_path)
    assert "--plaintext" not in agent_argv(local)
    assert parse(agent_argv(local)) == local


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"agent_port": None}, "agent server"),
        ({"readiness_bind": "127.0.0.1"}, "readiness_bind"),
        ({"max_downstream_connections": 10}, "max_downstream_connections"),
    ],
)
def test_settings_the_command_cannot_express_are_refused(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    node = NodeInfo(proxy_type="sidecar", ip="10.0.0.2", pod_name="p", namespace="default")
    s = AgentSettings(node=node, work_dir=tmp_path, **change)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        agent_argv(s)
