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
    assert "| real Envoy x1 " in out
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
