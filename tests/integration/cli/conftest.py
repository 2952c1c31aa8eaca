"""A real control plane (``pilotfish server`` subprocess, SQLite store) for CLI/API tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class ControlPlane:
    data_dir: Path
    config: Path
    url: str
    api_port: int
    xds_port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PILOTFISH_CONFIG": str(self.config)}

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def cli(
        self, *args: str, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `pilotfish` CLI against this control plane."""
        res = subprocess.run(
            [sys.executable, "-m", "pilotfish.cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
        )
        if check and res.returncode != 0:
            raise AssertionError(f"pilotfish {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
        return res

    def revision(self) -> int:
        return int(httpx.get(f"{self.url}/version", timeout=5).json()["revision"])

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_control_plane(data_dir: Path, config: Path, api_port: int, xds_port: int) -> ControlPlane:
    log = data_dir.parent / f"server-{api_port}.log"
    env = {**os.environ, "PILOTFISH_CONFIG": str(config)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pilotfish.cli.main",
                "server",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{api_port}",
                "--xds-listen",
                f"127.0.0.1:{xds_port}",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{api_port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"control plane exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200 and config.exists():
                return ControlPlane(data_dir, config, url, api_port, xds_port, proc, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"control plane did not become ready:\n{log.read_text()}")


@pytest.fixture
def control_plane_factory(
    tmp_path: Path, free_port: Callable[[], int]
) -> Iterator[Callable[[], ControlPlane]]:
    started: list[ControlPlane] = []
    data_dir = tmp_path / "data"
    config = tmp_path / "config"

    def factory() -> ControlPlane:
        cp = start_control_plane(data_dir, config, free_port(), free_port())
        started.append(cp)
        return cp

    try:
        yield factory
    finally:
        for cp in started:
            cp.kill(signal.SIGKILL)


@pytest.fixture
def control_plane(control_plane_factory: Callable[[], ControlPlane]) -> ControlPlane:
    return control_plane_factory()
