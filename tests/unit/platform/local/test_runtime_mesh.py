"""``pilotfish up``'s pure parts: command lines, URLs, preflight, and the CLI's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pilotfish.cli import runtime_cmds
from pilotfish.platform.local.network import PodNetworkSettings
from pilotfish.platform.local.runtime_mesh import (
    MeshSettings,
    _not_ready_report,
    gateway_argv,
    preflight_problem,
    runtime_argv,
    server_argv,
)


def settings(tmp_path: Path, **kw: object) -> MeshSettings:
    return MeshSettings(
        data_dir=tmp_path / "data",
        state_dir=tmp_path / "state",
        network=PodNetworkSettings(prefix="pft", pod_cidr="10.230.1.0/24"),
        python="/py",
        workdir=tmp_path,
        **kw,  # type: ignore[arg-type]
    )


def _opt(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_server_listens_for_xds_on_the_bridge_address(tmp_path: Path) -> None:
    s = settings(tmp_path, api_listen="127.0.0.1:25014", xds_port=25012)
    argv = server_argv(s)
    assert argv[:5] == ["/py", "-P", "-m", "pilotfish.cli.main", "server"]
    assert _opt(argv, "--xds-listen") == ["10.230.1.1:25012"]
    assert _opt(argv, "--listen") == ["127.0.0.1:25014"]
    assert _opt(argv, "--data-dir") == [str(tmp_path / "data")]
    assert s.api_url == "http://127.0.0.1:25014"
    # The dashboard on Kiali's port, over this mesh's Prometheus; neither when turned off.
    assert _opt(argv, "--dashboard-listen") == ["127.0.0.1:20001"]
    assert _opt(argv, "--prometheus-url") == ["http://127.0.0.1:9090"]
    off = server_argv(settings(tmp_path, dashboard_port=None, prometheus_port=None))
    assert _opt(off, "--dashboard-listen") == [""] and _opt(off, "--prometheus-url") == []


def test_runtime_gets_the_token_file_network_and_xds_address(tmp_path: Path) -> None:
    argv = runtime_argv(settings(tmp_path))
    assert argv[:5] == ["/py", "-P", "-m", "pilotfish.cli.runtime_cmds", "runtime"]
    assert _opt(argv, "--token-file") == [str(tmp_path / "data" / "admin-token")]
    assert _opt(argv, "--prefix") == ["pft"]
    assert _opt(argv, "--pod-cidr") == ["10.230.1.0/24"]
    assert _opt(argv, "--xds-address") == ["10.230.1.1:15012"]
    assert _opt(argv, "--workdir") == [str(tmp_path)]


def test_gateway_is_an_istio_ingressgateway_router_on_loopback(tmp_path: Path) -> None:
    s = settings(tmp_path)
    argv = gateway_argv(s)
    assert _opt(argv, "--type") == ["router"]
    assert _opt(argv, "--namespace") == ["istio-system"]
    assert "istio=ingressgateway" in _opt(argv, "--label")
    assert _opt(argv, "--bind-address") == ["127.0.0.1"]
    assert _opt(argv, "--token-file") == ["/run/pilotfish/pft/ingressgateway/token"]
    assert _opt(argv, "--gateway-port") == ["80:8080", "443:8443"]
    # The gateway verifies the control plane's TLS xDS port with the mesh roots.
    assert "--plaintext" not in argv
    assert _opt(argv, "--ca-file") == [str(tmp_path / "data" / "ca" / "mesh-roots.pem")]
    assert s.gateway_url == "http://127.0.0.1:8080"
    wide = settings(tmp_path, gateway_bind="0.0.0.0", gateway_ports=((80, 9999),))
    assert _opt(gateway_argv(wide), "--bind-address") == ["0.0.0.0"]
    assert wide.gateway_url == "http://127.0.0.1:9999"


def test_preflight_says_in_one_line_what_pods_need() -> None:
    everything = lambda name: f"/usr/bin/{name}"  # noqa: E731
    assert preflight_problem(0, "linux", everything) is None
    non_root = preflight_problem(1000, "linux", everything)
    assert non_root is not None and "\n" not in non_root
    assert "root" in non_root and "network namespaces" in non_root and "iptables" in non_root
    missing = preflight_problem(0, "linux", lambda n: None if n == "ip" else f"/bin/{n}")
    assert missing is not None and "ip" in missing and "iproute2" in missing
    assert "Linux" in (preflight_problem(0, "darwin", everything) or "")


def test_up_as_non_root_fails_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = CliRunner().invoke(
        runtime_cmds.up, ["--data-dir", str(tmp_path / "data"), "--prefix", "pft"]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "pods need root" in lines[0]
    assert not (tmp_path / "state" / "mesh.json").exists()


def test_status_without_a_mesh_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(runtime_cmds.status, ["--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1 and "not running" in result.output


def test_logs_of_an_unknown_pod_lists_the_running_ones(tmp_path: Path) -> None:
    pod_dir = tmp_path / "state" / "pods" / "default" / "reviews-v1-x"
    pod_dir.mkdir(parents=True)
    (pod_dir / "pod.json").write_text(
        json.dumps(
            {
                "name": "reviews-v1-x",
                "namespace": "default",
                "containers": ["reviews", "istio-proxy"],
                "netns": "pf-x",
                "uid": 1,
                "gid": 1,
            }
        )
    )
    (pod_dir / "reviews.log").write_text("hello from reviews\n")
    (pod_dir / "istio-proxy.log").write_text("envoy says hi\n")
    args = ["--data-dir", str(tmp_path / "data")]
    missing = CliRunner().invoke(runtime_cmds.logs, ["nope", *args])
    assert missing.exit_code == 1 and "default/reviews-v1-x" in missing.output
    app = CliRunner().invoke(runtime_cmds.logs, ["reviews-v1-x", *args])
    assert app.exit_code == 0 and app.output == "hello from reviews\n"
    proxy = CliRunner().invoke(runtime_cmds.logs, ["reviews-v1-x", "-c", "istio-proxy", *args])
    assert proxy.output == "envoy says hi\n"
    wrong = CliRunner().invoke(runtime_cmds.logs, ["reviews-v1-x", "-c", "db", *args])
    assert wrong.exit_code == 1 and "reviews, istio-proxy" in wrong.output


def test_a_pod_not_ready_in_time_is_explained_by_its_status_and_proxy_log(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path)
    log = s.pods_dir / "istio-system" / "gw-1" / "istio-proxy.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(20)))
    pod = {
        "metadata": {"namespace": "istio-system", "name": "gw-1"},
        "status": {
            "phase": "Running",
            "reason": "ContainersNotReady",
            "containerStatuses": [
                {
                    "name": "istio-proxy",
                    "ready": False,
                    "restartCount": 2,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "no cert"}},
                }
            ],
        },
    }
    lines = _not_ready_report(s, [pod])
    assert lines[0] == "pod istio-system/gw-1: Running, ContainersNotReady"
    assert lines[1] == (
        "  container istio-proxy: waiting, ready=False, restarts=2 (CrashLoopBackOff: no cert)"
    )
    assert lines[2:] == [f"  istio-proxy.log: line {i}" for i in range(12, 20)]
    assert "no pod was created" in _not_ready_report(s, [])[0]
