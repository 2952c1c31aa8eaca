"""The local runtime's sidecars verify the control plane's TLS xDS port with the mesh roots:
where the roots are, the agent's command line, and a runtime without them refusing to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from pilotfish.platform.local.commands import IptablesTools
from pilotfish.platform.local.network import PodNet, PodNetwork, PodNetworkSettings
from pilotfish.platform.local.runtime_main import (
    RuntimeProcessSettings,
    mesh_roots_path,
    run_dir_for,
    run_runtime,
)
from pilotfish.platform.local.runtime_mesh import MeshError, copy_mesh_roots
from pilotfish.platform.local.runtime_pod import LocalPod, NetworkView, PodRunnerSettings
from pilotfish.platform.local.users import MeshUsers


def _settings(tmp_path: Path, **kw: Any) -> PodRunnerSettings:
    return PodRunnerSettings(
        log_dir=tmp_path / "pods",
        run_dir=tmp_path / "run",
        workdir=tmp_path,
        discovery_address="10.230.1.1:15012",
        proxy_argv=("/py", "-m", "pilotfish.cli.main", "proxy"),
        **kw,
    )


def test_roots_live_in_the_run_directory_unless_given(tmp_path: Path) -> None:
    assert _settings(tmp_path).ca_file == tmp_path / "run" / "mesh-roots.pem"
    assert _settings(tmp_path, xds_ca_file=tmp_path / "r.pem").ca_file == tmp_path / "r.pem"
    assert mesh_roots_path("pft") == run_dir_for("pft") / "mesh-roots.pem"


def test_sidecar_agent_verifies_the_control_plane(tmp_path: Path) -> None:
    network = PodNetwork(PodNetworkSettings(prefix="pft", pod_cidr="10.230.1.0/24"))
    pod = LocalPod(
        {"metadata": {"name": "reviews-v1-abc", "namespace": "default", "labels": {"a": "b"}}},
        injected=True,
        network=network,
        users=cast(MeshUsers, None),
        settings=_settings(tmp_path),
        tools=cast(IptablesTools, None),
        view=NetworkView(),
    )
    pod.net = PodNet(name="pft-x", ip="10.230.1.5", veth_host="pft-v")
    argv = pod._agent_argv()
    assert "--plaintext" not in argv
    assert argv[argv.index("--ca-file") + 1] == str(tmp_path / "run" / "mesh-roots.pem")
    assert argv[argv.index("--discovery-address") + 1] == "10.230.1.1:15012"


def test_runtime_without_mesh_roots_refuses_to_start(tmp_path: Path) -> None:
    settings = RuntimeProcessSettings(
        api_url="http://127.0.0.1:1",
        token="t",
        state_dir=tmp_path / "state",
        network=PodNetworkSettings(prefix="pft", pod_cidr="10.230.1.0/24"),
        pods=_settings(tmp_path),
    )
    assert run_runtime(settings) == 2
    assert not (tmp_path / "run").exists() and not (tmp_path / "state").exists()


def test_up_copies_the_roots_world_readable_and_says_when_there_are_none(tmp_path: Path) -> None:
    source = tmp_path / "data" / "ca" / "mesh-roots.pem"
    out = tmp_path / "run" / "pft" / "mesh-roots.pem"
    with pytest.raises(MeshError, match=r"wrote no mesh roots at .*see its log in .*server.log"):
        copy_mesh_roots(source, out, tmp_path / "server.log")
    source.parent.mkdir(parents=True, mode=0o700)
    source.write_text("-----BEGIN CERTIFICATE-----\nroots\n")
    copy_mesh_roots(source, out, tmp_path / "server.log")
    assert out.read_text() == source.read_text()
    assert out.stat().st_mode & 0o777 == 0o644
    assert out.parent.stat().st_mode & 0o777 == 0o755
