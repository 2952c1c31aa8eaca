"""Each benchmark script runs end to end in its tiny ``--quick`` configuration, so the scripts
do not rot. Nothing here looks at timing: a run must finish, exit 0 and print its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def run(script: str, *args: str, tmp_path: Path) -> str:
    res = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--workdir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert res.returncode == 0, f"{script} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.mark.timeout(300)
def test_push_latency_quick(tmp_path: Path) -> None:
    out = run("push_latency.py", tmp_path=tmp_path)
    for kind in ("VS weight", "DR subset", "endpoint"):
        assert f"| real Envoy x1: {kind} " in out, out
    assert "| simulated x2 " in out
    assert "all ACKed median ms" in out


@pytest.mark.timeout(300)
def test_controlplane_cost_quick(tmp_path: Path) -> None:
    out = run("controlplane_cost.py", tmp_path=tmp_path)
    assert "MB/proxy" in out
    lines = [line for line in out.splitlines() if line.startswith("| 2 ")]
    assert len(lines) == 1, out


@pytest.mark.timeout(300)
def test_dataplane_quick(tmp_path: Path) -> None:
    out = run("dataplane.py", "--dump-dir", str(tmp_path / "dumps"), tmp_path=tmp_path)
    rows = {
        cells[0]: cells
        for line in out.splitlines()
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
    }
    for path in ("direct", "hand-written", "generated"):
        assert path in rows, out
        assert rows[path][5] == "0", f"{path} had failed requests:\n{out}"  # errors column
        assert float(rows[path][2]) > 0, out  # requests per second
    assert (tmp_path / "dumps" / "generated-client.json").is_file()


def _rows(out: str, first: str) -> list[list[str]]:
    """The rows of the printed tables whose first cell is ``first``."""
    return [
        cells
        for line in out.splitlines()
        if line.startswith("| ")
        for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]
        if cells[0] == first
    ]


@pytest.mark.timeout(300)
def test_dataplane_mtls_quick(tmp_path: Path) -> None:
    out = run("dataplane.py", "--tls", "mtls", tmp_path=tmp_path)
    for path in ("direct", "hand-written mTLS", "generated mTLS"):
        rows = _rows(out, path)
        assert len(rows) == 1, out
        assert rows[0][5] == "0", f"{path} had failed requests:\n{out}"  # errors column
        assert float(rows[0][2]) > 0, out
    assert "hand-written mTLS client Envoy: " in out
    assert _rows(out, "hand-written") == [], out  # no plaintext pair in this mode


@pytest.mark.timeout(300)
def test_telemetry_quick(tmp_path: Path) -> None:
    out = run("telemetry.py", tmp_path=tmp_path)
    # The load table: one row per mode, no failed request, CPU per request read.
    for mode in ("off", "on"):
        load = [r for r in _rows(out, mode) if r[1] == "1"]
        assert len(load) == 1, out
        assert load[0][5] == "0", f"telemetry {mode} had failed requests:\n{out}"
        assert float(load[0][2]) > 0 and float(load[0][6]) > 0, out
    # The series table (mode, sidecar, istio_*, standard, istio_requests_total, envoy_*, all,
    # access-log lines): telemetry off means no standard metric and no access log.
    series = {(r[0], r[1]): r for r in _rows(out, "off") + _rows(out, "on") if len(r) == 8}
    assert set(series) == {(m, s) for m in ("off", "on") for s in ("client", "server")}, out
    for side in ("client", "server"):
        assert series[("off", side)][3] == "0" and series[("off", side)][7] == "0", out
        assert int(series[("on", side)][4]) >= 1, out  # istio_requests_total, this reporter
        assert int(series[("on", side)][7]) >= 1, out  # access-log lines
    # The ratios table names both targets.
    assert "p50 / off" in out and "Envoy CPU per request / off" in out
