"""EnvoySupervisor with a real Envoy: readiness without a control plane, restart, no leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pilotfish.agent.agent import supervisor_settings
from pilotfish.agent.bootstrap import render_bootstrap, write_bootstrap
from pilotfish.agent.process import pids_alive
from pilotfish.agent.supervisor import EnvoySupervisor, SupervisorSettings

from .conftest import eventually, http_get, loopback_settings

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]


def _supervisor_for(
    tmp_path: Path, free_port: Callable[[], int], **overrides: object
) -> tuple[EnvoySupervisor, int]:
    settings = loopback_settings(tmp_path, free_port, **overrides)
    write_bootstrap(render_bootstrap(settings), settings.bootstrap_path)
    sup = supervisor_settings(settings)
    fast = SupervisorSettings(**{**sup.__dict__, "backoff_initial_s": 0.05, "stop_timeout_s": 5.0})
    return EnvoySupervisor(fast), settings.readiness_port


async def test_never_ready_while_waiting_for_first_config(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    # initial_fetch_timeout 0: Envoy waits for the control plane forever; it never goes LIVE
    # and starts no listener, so the readiness port refuses connections.
    supervisor, readiness_port = _supervisor_for(tmp_path, free_port, initial_fetch_timeout_s=0)
    try:
        await supervisor.start()
        state = await eventually(supervisor.admin.server_state, what="admin up")
        assert state in ("PRE_INITIALIZING", "INITIALIZING")
        cds_attempts = await eventually(
            lambda: _stat(supervisor, "cluster_manager.cds.update_attempt"),
            what="a CDS attempt",
        )
        assert cds_attempts >= 1
        assert await supervisor.admin.server_state() != "LIVE"
        assert await http_get(f"http://127.0.0.1:{readiness_port}/healthz/ready") is None
        readiness = await supervisor.readiness()
        assert not readiness.ready
        assert "INITIALIZING" in readiness.reason
    finally:
        await supervisor.stop()
    assert supervisor.pid is None


async def _stat(supervisor: EnvoySupervisor, name: str) -> int:
    return (await supervisor.admin.stats(f"^{name}$")).get(name, 0)


async def test_restarts_after_kill_and_leaves_nothing_after_drain(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    supervisor, _ = _supervisor_for(tmp_path, free_port)
    pids: list[int] = []
    try:
        await supervisor.start()
        first = supervisor.pid
        assert first is not None
        pids.append(first)
        await eventually(supervisor.admin.server_state, what="admin up")
        os.kill(first, signal.SIGKILL)
        second = await eventually(
            lambda: supervisor.pid if supervisor.pid not in (None, first) else None,
            what="a new Envoy",
        )
        pids.append(second)
        assert supervisor.restarts == 1
        # The new Envoy serves admin on the same port.
        await eventually(supervisor.admin.server_state, what="admin up again")
        await supervisor.drain_and_stop(drain_seconds=2)
    finally:
        await supervisor.stop()
    assert supervisor.pid is None
    assert pids_alive(pids) == []


async def test_backoff_gives_up_after_max_restarts(tmp_path: Path) -> None:
    # A bootstrap Envoy refuses: every start fails at once.
    bad = tmp_path / "bad.json"
    bad.write_text('{"node": {"id": "x"}, "admin": {"address": 1}}')
    supervisor = EnvoySupervisor(
        SupervisorSettings(
            bootstrap_path=bad,
            admin_port=1,
            concurrency=1,
            backoff_initial_s=0.01,
            backoff_max_s=0.02,
            max_restarts=2,
            log_path=tmp_path / "envoy.log",
        )
    )
    try:
        await supervisor.start()
        await asyncio.wait_for(supervisor.wait(), timeout=60)
    finally:
        await supervisor.stop()
    assert supervisor.failed
    assert supervisor.restarts == 2


AGENT_SCRIPT = """
import asyncio, sys
from pathlib import Path
from pilotfish.agent.supervisor import EnvoySupervisor, SupervisorSettings

async def main():
    sup = EnvoySupervisor(SupervisorSettings(Path(sys.argv[1]), int(sys.argv[2]), concurrency=1))
    await sup.start()
    while await sup.admin.server_state() is None:  # Envoy itself runs (setpriv has exec'd it)
        await asyncio.sleep(0.05)
    print(sup.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_envoy_dies_with_a_killed_agent(tmp_path: Path, free_port: Callable[[], int]) -> None:
    settings = loopback_settings(tmp_path, free_port)
    write_bootstrap(render_bootstrap(settings), settings.bootstrap_path)
    agent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            AGENT_SCRIPT,
            str(settings.bootstrap_path),
            str(settings.admin_port),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    envoy_pid = None
    try:
        assert agent.stdout is not None
        envoy_pid = int(agent.stdout.readline())
        assert pids_alive([envoy_pid]) == [envoy_pid]
        agent.kill()  # SIGKILL: the agent gets no chance to clean up
        agent.wait(timeout=30)
        asyncio.run(eventually(lambda: not pids_alive([envoy_pid]), what="Envoy to die"))
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        if envoy_pid is not None and pids_alive([envoy_pid]):
            os.kill(envoy_pid, signal.SIGKILL)
