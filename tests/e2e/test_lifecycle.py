"""Mesh lifecycle: a crash is cleaned up by the next `up`, and config survives down/up."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from pilotfish.platform.local.runtime_mesh import load_mesh
from tests.e2e.conftest import bring_up

pytestmark = pytest.mark.e2e

SLEEP = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "sleep", "namespace": "default"},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "sleep"}},
        "template": {
            "metadata": {"labels": {"app": "sleep"}},
            "spec": {
                "containers": [
                    {"name": "sleep", "command": ["python3", "-c", "import time; time.sleep(1e9)"]}
                ]
            },
        },
    },
}


def test_crashed_mesh_is_cleaned_up_by_the_next_up_and_config_survives(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("lifecycle")
    manifest = root / "sleep.json"
    manifest.write_text(json.dumps(SLEEP))
    with bring_up(root) as mesh:
        mesh.cli("apply", "-f", str(manifest))
        first = {p["metadata"]["name"] for p in mesh.wait_pods_ready("default", 2, timeout=30)}
        token = (mesh.data_dir / "admin-token").read_text()

        # Crash: every process of the mesh dies at once, nothing is cleaned up.
        state = load_mesh(root / "state")
        assert state is not None
        for key in ("runtime", "gateway_process", "server"):
            os.kill(int(state[key]["pid"]), signal.SIGKILL)
        time.sleep(0.5)
        left = mesh.leftovers()
        assert any(item.startswith("netns ") for item in left), left

        status = mesh.local("status", check=False)
        assert status.returncode == 1 and "stopped" in status.stdout

        # The next `up` clears what the crash left and starts over with the same state.
        args = state["runtime"]["argv"]
        mesh.local(
            "up",
            "--listen", f"127.0.0.1:{mesh.api_port}",
            "--xds-port", _opt(state["server"]["argv"], "--xds-listen").rsplit(":", 1)[1],
            "--gateway-port", f"80:{mesh.gateway_port}",
            "--gateway-port", f"8080:{mesh.gateway_port}",
            "--gateway-admin-port", _opt(state["gateway_process"]["argv"], "--admin-port"),
            "--gateway-agent-port", _opt(state["gateway_process"]["argv"], "--agent-port"),
            "--gateway-readiness-port",
            _opt(state["gateway_process"]["argv"], "--readiness-port"),
            "--prometheus-port", str(mesh.prometheus_port),
            "--prefix", mesh.prefix,
            "--pod-cidr", _opt(args, "--pod-cidr"),
            "--workdir", _opt(args, "--workdir"),
        )  # fmt: skip
        assert (mesh.data_dir / "admin-token").read_text() == token
        second = {p["metadata"]["name"] for p in mesh.wait_pods_ready("default", 2, timeout=30)}
        assert first.isdisjoint(second)  # fresh pods from the Deployment kept in the store
        assert mesh.local("status").returncode == 0


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_down_after_a_crash_without_up_cleans_everything(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("crashdown")
    (root / "sleep.json").write_text(json.dumps(SLEEP))
    with bring_up(root) as mesh:
        mesh.cli("apply", "-f", str(root / "sleep.json"))
        mesh.wait_pods_ready("default", 2, timeout=30)
        state = load_mesh(root / "state")
        assert state is not None
        os.kill(int(state["runtime"]["pid"]), signal.SIGKILL)
        time.sleep(0.3)
        mesh.local("down")
        assert mesh.leftovers() == []
    assert not Path(root / "state" / "mesh.json").exists()
