"""`pilotfish verify-install` on a real local mesh: every part checked and healthy, then one
part stopped and named, with its fix, and a non-zero exit."""

from __future__ import annotations

import json
import os
import signal

import pytest

from pilotfish.platform.local.runtime_mesh import load_mesh
from tests.e2e.conftest import Mesh, bring_up
from tests.e2e.test_install import WEB

pytestmark = pytest.mark.e2e


def _verify(mesh: Mesh) -> tuple[int, str]:
    res = mesh.run(
        "pilotfish.cli.main", "verify-install", "--data-dir", str(mesh.data_dir), check=False
    )
    return res.returncode, res.stdout + res.stderr


def test_verify_install_checks_every_part_and_names_a_stopped_one(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("verify")
    with bring_up(root) as mesh:
        manifest = root / "web.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": WEB}))
        mesh.cli("apply", "-f", str(manifest))
        pod = mesh.wait_pods_ready("default", 1, timeout=60)[0]["metadata"]["name"]

        code, out = _verify(mesh)
        assert code == 0, out
        for part in ("control plane", "pod runtime", "ingress gateway", "ingress gateway xDS",
                     "proxy config", "Envoy version", "CA and mesh roots", "iptables",
                     "prometheus", "trace collector", "dashboard"):  # fmt: skip
            assert f"✔ {part}:" in out, out
        assert "capture in 1 injected pod(s)" in out
        assert "2 connected proxies run 1.40.x" in out  # the gateway's and the pod's Envoys

        # One part stopped: named, with its fix, and the command fails.
        state = load_mesh(root / "state")
        assert state is not None
        os.kill(int(state["gateway_process"]["pid"]), signal.SIGTERM)
        mesh.run("pilotfish.cli.main", "wait", "--for=synced", check=False)
        code, out = _verify(mesh)
        assert code == 1, out
        assert "✘ ingress gateway: stopped" in out
        assert "fix: the ingress gateway's agent or Envoy is down or not ready" in out
        assert "checks failed: ingress gateway" in out
        for part in ("control plane", "pod runtime", "CA and mesh roots", "iptables"):
            assert f"✔ {part}:" in out, out
        assert pod in mesh.cli("get", "pods").stdout
