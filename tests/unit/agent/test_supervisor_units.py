"""Envoy command line and restart backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.agent.admin import Readiness, evaluate_readiness
from pilotfish.agent.agent import supervisor_settings
from pilotfish.agent.settings import AgentSettings
from pilotfish.agent.supervisor import (
    Backoff,
    EnvoySupervisor,
    RestartPolicy,
    SupervisorSettings,
    envoy_command,
)
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


class _Admin:
    """Admin answers: ``/ready``'s state and the xDS stats; counts the ``/stats`` reads."""

    def __init__(self, state: str, stats: dict[str, int]) -> None:
        self.state, self.stats_now, self.stats_reads = state, stats, 0

    async def readiness(self, *, require_xds: bool = True, draining: bool = False) -> Readiness:
        if require_xds:
            self.stats_reads += 1
        stats = self.stats_now if require_xds else {}
        return evaluate_readiness(self.state, stats, require_xds=require_xds, draining=draining)


class _Proc:
    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None


async def test_xds_received_is_read_once_per_envoy_process(tmp_path: Path) -> None:
    supervisor = EnvoySupervisor(
        SupervisorSettings(bootstrap_path=tmp_path / "b.json", admin_port=1, binary=tmp_path)
    )
    received = {"cluster_manager.cds.update_success": 1, "listener_manager.lds.update_success": 1}
    admin = _Admin("LIVE", received)
    supervisor.admin = admin  # type: ignore[assignment]
    supervisor._proc = _Proc(100)  # type: ignore[assignment]
    assert (await supervisor.readiness()).ready
    # The counters never go back to 0 for this process: /ready alone decides from now on.
    admin.stats_now = {}
    assert (await supervisor.readiness()).ready
    assert admin.stats_reads == 1
    admin.state = "DRAINING"
    assert not (await supervisor.readiness()).ready
    # A restarted Envoy (another process) has received nothing yet.
    admin.state = "LIVE"
    supervisor._proc = _Proc(101)  # type: ignore[assignment]
    readiness = await supervisor.readiness()
    assert not readiness.ready
    assert "config not received" in readiness.reason
