"""Explicit-mode app environment."""

from __future__ import annotations

from pathlib import Path

from pilotfish.agent.app import app_environment
from pilotfish.agent.settings import AgentSettings
from pilotfish.api.node import NodeInfo


def _settings(**kw: object) -> AgentSettings:
    node = NodeInfo(
        proxy_type="sidecar",
        ip="127.0.0.5",
        pod_name="ratings-1",
        namespace="bookinfo",
        service_account="ratings",
        interception_mode="NONE",
        outbound_port=25001,
        inbound_ports={9080: 29080, 8080: 28080},
    )
    return AgentSettings(node=node, work_dir=Path("/unused"), **kw)  # type: ignore[arg-type]


def test_app_learns_its_sidecar_addresses() -> None:
    env = app_environment(_settings(), {"PATH": "/bin", "KEEP": "1"})
    assert env["PATH"] == "/bin" and env["KEEP"] == "1"
    assert env["PILOTFISH_OUTBOUND"] == "127.0.0.1:25001"
    assert env["PILOTFISH_OUTBOUND_URL"] == "http://127.0.0.1:25001"
    assert env["PILOTFISH_INBOUND_PORTS"] == "8080:28080,9080:29080"
    assert (env["POD_NAME"], env["POD_NAMESPACE"], env["INSTANCE_IP"]) == (
        "ratings-1",
        "bookinfo",
        "127.0.0.5",
    )
    assert env["SERVICE_ACCOUNT"] == "ratings"
    assert "HTTP_PROXY" not in env


def test_http_proxy_env_is_opt_in() -> None:
    env = app_environment(_settings(app_http_proxy_env=True), {})
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://127.0.0.1:25001"
    assert "127.0.0.1" in env["NO_PROXY"]
