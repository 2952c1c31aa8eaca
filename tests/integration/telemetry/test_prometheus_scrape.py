"""A real Prometheus, configured as the local mesh configures it, scraping a real control
plane's /metrics and a real sidecar agent's /stats/prometheus, answering PromQL."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pilotfish.platform.local.prometheus import (
    PrometheusLayout,
    config_for,
    prometheus_argv,
    render_config,
    write_targets,
)
from tests.integration.harness import Mesh, eventually

pytestmark = pytest.mark.integration

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def prometheus(
    tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[tuple[PrometheusLayout, int, Callable[[dict[str, Any]], str]]]:
    """(layout, port, start(config) -> URL): a real Prometheus, stopped afterwards."""
    if PROMETHEUS is None:
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    layout = PrometheusLayout(tmp_path / "prometheus")
    port = free_port()
    proc: subprocess.Popen[bytes] | None = None

    def start(config: dict[str, Any]) -> str:
        nonlocal proc
        layout.targets_dir.mkdir(parents=True, exist_ok=True)
        layout.config.write_text(render_config(config))
        argv = prometheus_argv(str(PROMETHEUS), layout, f"127.0.0.1:{port}")
        log = open(tmp_path / "prometheus.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc is not None and proc.poll() is None, (
                tmp_path / "prometheus.log"
            ).read_text()
            try:
                return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(ready, 30, "prometheus ready")
        return url

    try:
        yield layout, port, start
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_control_plane_and_a_sidecar(mesh: Mesh, prometheus: Any) -> None:
    layout, port, start = prometheus
    sidecar = mesh.add("ratings-1", {"app": "ratings", "version": "v1"})
    config = config_for(
        api=f"127.0.0.1:{mesh.cp.api_port}",
        gateway_agent=f"127.0.0.1:{sidecar.agent_port}",
        targets_dir=layout.targets_dir,
        self_address=f"127.0.0.1:{port}",
        interval="1s",
    )
    # The pod job's targets come from the file the runtime writes.
    write_targets(
        layout.pod_targets,
        [
            {
                "targets": [f"127.0.0.1:{sidecar.agent_port}"],
                "labels": {
                    "namespace": "default",
                    "pod": "ratings-1",
                    "app": "ratings",
                    "version": "v1",
                    "__metrics_path__": "/stats/prometheus",
                },
            }
        ],
    )
    url = start(config)

    def connected_proxies() -> bool:
        result = query(url, 'pilot_xds{job="istiod",app="istiod"}')
        return bool(result) and float(result[0]["value"][1]) >= 1

    eventually(connected_proxies, 30, "pilot_xds >= 1 in Prometheus")
    build = query(url, 'istio_build{component="pilot"}')
    assert build and build[0]["metric"]["job"] == "istiod"
    pushes = query(url, 'sum by (type) (pilot_xds_pushes{job="istiod"})')
    assert {r["metric"]["type"] for r in pushes} >= {"cds", "lds"}

    def pods_up() -> bool:
        return [r["value"][1] for r in query(url, 'up{job="kubernetes-pods",pod="ratings-1"}')] == [
            "1"
        ]

    eventually(pods_up, 30, "the sidecar's agent scraped through file_sd")
    proxy_build = query(url, 'istio_build{component="proxy",job="kubernetes-pods"}')
    assert proxy_build and proxy_build[0]["metric"]["app"] == "ratings"
    assert query(url, 'envoy_server_live{job="kubernetes-pods",namespace="default"}')

    # A pod that goes away leaves the targets file, and Prometheus stops scraping it.
    write_targets(layout.pod_targets, [])

    def gone() -> bool:
        targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
        return not [t for t in targets if t["labels"].get("job") == "kubernetes-pods"]

    eventually(gone, 30, "the pod's target removed")
