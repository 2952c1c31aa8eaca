"""The whole agent with a real Envoy: honest readiness, metrics, app lifecycle, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pilotfish.agent.agent import run_agent
from pilotfish.agent.settings import HostPort

from .conftest import EmptyAds, eventually, http_get, loopback_settings

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"


def envoy_pids(marker: str) -> list[int]:
    """Envoy processes whose command line mentions ``marker`` (a test's own work dir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and "envoy" in cmdline and state not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


async def _status(url: str) -> tuple[int, str] | None:
    response = await http_get(url)
    return None if response is None else (response.status_code, response.text)


@pytest.mark.parametrize("api", ["delta", "sotw"])
async def test_ready_once_the_control_plane_answered(
    api: str,
    tmp_path: Path,
    free_port: Callable[[], int],
    empty_ads: tuple[EmptyAds, int],
) -> None:
    ads, ads_port = empty_ads
    settings = loopback_settings(
        tmp_path, free_port, xds_api=api, discovery_address=HostPort("127.0.0.1", ads_port)
    )
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(settings, stop))
    try:
        ready_url = f"http://127.0.0.1:{settings.readiness_port}/healthz/ready"
        await eventually(lambda: _is_status(ready_url, 200), what="readiness 200 through Envoy")
        assert ads.nodes and ads.nodes[0] == settings.node.node_id
        assert {CLUSTER_TYPE, LISTENER_TYPE} <= set(ads.type_urls)
        agent_ready = await _status(f"http://127.0.0.1:{settings.agent_port}/healthz/ready")
        assert agent_ready == (200, "ready\n")
        metrics = await http_get(f"http://127.0.0.1:{settings.agent_port}/stats/prometheus")
        assert metrics is not None and metrics.status_code == 200
        assert "envoy_cluster_manager_cds_update_success" in metrics.text
        other = await _status(f"http://127.0.0.1:{settings.readiness_port}/other")
        assert other is not None and other[0] == 404
    finally:
        stop.set()
        code = await asyncio.wait_for(agent, timeout=60)
    assert code == 0
    assert envoy_pids(str(settings.work_dir)) == []


async def _is_status(url: str, status: int) -> bool:
    result = await _status(url)
    return result is not None and result[0] == status


async def test_live_envoy_without_config_is_not_ready(
    tmp_path: Path, free_port: Callable[[], int]
) -> None:
    # No control plane: after initial_fetch_timeout (CDS, then LDS) Envoy goes LIVE and opens
    # its listeners anyway. Readiness must still say no.
    settings = loopback_settings(tmp_path, free_port, initial_fetch_timeout_s=0.5)
    admin_ready = f"http://127.0.0.1:{settings.admin_port}/ready"
    stop = asyncio.Event()
    agent = asyncio.create_task(run_agent(settings, stop))
    try:
        await eventually(lambda: _is_status(admin_ready, 200), what="Envoy LIVE without config")
        through_envoy = await _status(f"http://127.0.0.1:{settings.readiness_port}/healthz/ready")
        assert through_envoy is not None
        assert through_envoy[0] == 503
        assert "config not received from the control plane" in through_envoy[1]
        agent_ready = await _status(f"http://127.0.0.1:{settings.agent_port}/healthz/ready")
        assert agent_ready is not None and agent_ready[0] == 503
    finally:
        stop.set()
        code = await asyncio.wait_for(agent, timeout=60)
    assert code == 0
    assert envoy_pids(str(settings.work_dir)) == []


async def test_app_exit_code_becomes_the_agents(
    tmp_path: Path, free_port: Callable[[], int], empty_ads: tuple[EmptyAds, int]
) -> None:
    _, ads_port = empty_ads
    settings = loopback_settings(
        tmp_path,
        free_port,
        discovery_address=HostPort("127.0.0.1", ads_port),
        app_command=(sys.executable, "-c", "import sys; sys.exit(3)"),
    )
    code = await asyncio.wait_for(run_agent(settings, asyncio.Event()), timeout=60)
    assert code == 3
    assert envoy_pids(str(settings.work_dir)) == []


APP = """
import json, os, signal, sys, time, urllib.request
out = sys.argv[1]
admin = sys.argv[2]
json.dump(dict(os.environ), open(out + ".env.tmp", "w"))
os.rename(out + ".env.tmp", out + ".env")

def on_term(*_):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=5)
        alive = True
    except Exception as exc:
        alive = getattr(exc, "code", None) is not None  # an HTTP error still means Envoy answered
    open(out + ".stop", "w").write(json.dumps({"envoy_alive": alive}))
    sys.exit(0)

signal.signal(signal.SIGTERM, on_term)
while True:
    time.sleep(1)
"""


async def test_cli_runs_app_after_ready_and_stops_it_before_envoy(
    tmp_path: Path, free_port: Callable[[], int], empty_ads: tuple[EmptyAds, int]
) -> None:
    _, ads_port = empty_ads
    ports = {name: free_port() for name in ("admin", "readiness", "agent", "outbound", "inbound")}
    work_dir = tmp_path / "work"
    out = tmp_path / "app"
    cmd = [
        sys.executable, "-c", "from pilotfish.cli.proxy_cmd import proxy; proxy()",
        "--discovery-address", f"127.0.0.1:{ads_port}",
        "--namespace", "bookinfo", "--pod-name", "ratings-v1", "--label", "app=ratings",
        "--interception-mode", "NONE",
        "--outbound-port", str(ports["outbound"]),
        "--inbound-port", f"9080:{ports['inbound']}",
        "--admin-port", str(ports["admin"]),
        "--readiness-port", str(ports["readiness"]),
        "--agent-port", str(ports["agent"]),
        "--concurrency", "1", "--drain-seconds", "1",
        "--work-dir", str(work_dir),
        "--envoy-log-path", str(tmp_path / "envoy.log"),
        "--", sys.executable, "-c", APP, str(out), str(ports["admin"]),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    )
    try:
        env_file = out.with_suffix(".env")
        await eventually(env_file.exists, timeout_s=60, what="the app to start")
        # The app starts only once the proxy is ready.
        ready = await _status(f"http://127.0.0.1:{ports['readiness']}/healthz/ready")
        assert ready is not None and ready[0] == 200
        env = json.loads(env_file.read_text())
        assert env["PILOTFISH_OUTBOUND"] == f"127.0.0.1:{ports['outbound']}"
        assert env["PILOTFISH_INBOUND_PORTS"] == f"9080:{ports['inbound']}"
        assert env["POD_NAMESPACE"] == "bookinfo"
        bootstrap = json.loads((work_dir / "envoy-bootstrap.json").read_text())
        assert bootstrap["node"]["id"].startswith("sidecar~127.0.0.1~ratings-v1.bookinfo~")

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for pid in envoy_pids(str(work_dir)):
            os.kill(pid, signal.SIGKILL)
    assert code == 0
    stop_record = json.loads(out.with_suffix(".stop").read_text())
    assert stop_record == {"envoy_alive": True}, "the app must stop before Envoy"
    assert envoy_pids(str(work_dir)) == []


async def test_agent_port_in_use_is_reported(
    tmp_path: Path, free_port: Callable[[], int], caplog: pytest.LogCaptureFixture
) -> None:
    settings = loopback_settings(tmp_path, free_port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", settings.agent_port or 0))
        taken.listen()
        code = await asyncio.wait_for(run_agent(settings, asyncio.Event()), timeout=60)
    assert code == 1
    assert f"agent port 127.0.0.1:{settings.agent_port}" in caplog.text
    assert envoy_pids(str(settings.work_dir)) == []
