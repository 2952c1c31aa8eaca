"""Envoy command line and restart backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.agent.agent import supervisor_settings
from pilotfish.agent.settings import AgentSettings
from pilotfish.agent.supervisor import Backoff, RestartPolicy, SupervisorSettings, envoy_command
from pilotfish.api.node import NodeInfo


def test_envoy_command_flags() -> None:
    settings = SupervisorSettings(
        bootstrap_path=Path("/w/envoy-bootstrap.json"),
        admin_port=25000,
        concurrency=3,
        log_level="info",
        log_path=Path("/w/envoy.log"),
        listener_drain_s=0,
        extra_args=("--file-flush-interval-msec", "200"),
    )
    cmd = envoy_command(settings, Path("/bin/envoy"))
    assert cmd[0] == "/bin/envoy"
    assert cmd[1:3] == ["-c", "/w/envoy-bootstrap.json"]
    assert "--disable-hot-restart" in cmd
    after_flag = cmd[cmd.index("--disable-hot-restart") + 1 :]
    pairs = dict(zip(after_flag[::2], after_flag[1::2], strict=True))
    assert pairs["--drain-time-s"] == "0"
    assert pairs["--drain-strategy"] == "immediate"
    assert pairs["--log-level"] == "info"
    assert pairs["--log-path"] == "/w/envoy.log"
    assert pairs["--file-flush-interval-msec"] == "200"
    assert cmd[cmd.index("--concurrency") + 1] == "3"


def test_envoy_command_logs_to_stderr_by_default() -> None:
    cmd = envoy_command(SupervisorSettings(Path("b.json"), 1), Path("envoy"))
    assert "--log-path" not in cmd


def test_backoff_doubles_caps_and_resets() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)


def test_restart_policy_resets_after_a_stable_run() -> None:
    policy = RestartPolicy(Backoff(1.0, 8.0), stable_after_s=60)
    assert [policy.after_exit(0.1) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.after_exit(61) == 1.0  # ran long enough: start over
    assert policy.after_exit(0.1) == 2.0


def test_restart_policy_gives_up_only_on_crash_loops() -> None:
    policy = RestartPolicy(Backoff(0.0, 0.0), stable_after_s=10, max_restarts=2)
    assert policy.after_exit(1) == 0.0
    assert policy.after_exit(1) == 0.0
    assert policy.after_exit(1) is None
    policy = RestartPolicy(Backoff(0.0, 0.0), stable_after_s=10, max_restarts=2)
    assert [policy.after_exit(11) for _ in range(10)] == [0.0] * 10


def test_agent_derives_supervisor_settings(tmp_path: Path) -> None:
    node = NodeInfo(proxy_type="sidecar", ip="127.0.0.1", pod_name="p", namespace="ns")
    agent = AgentSettings(
        node=node, work_dir=tmp_path, admin_port=25000, concurrency=1, drain_seconds=0.5
    )
    sup = supervisor_settings(agent)
    assert sup.bootstrap_path == tmp_path / "envoy-bootstrap.json"
    assert (sup.admin_port, sup.concurrency, sup.require_xds) == (25000, 1, True)
    assert sup.listener_drain_s == 0
    assert supervisor_settings(AgentSettings(node=node, work_dir=tmp_path)).listener_drain_s == 1
