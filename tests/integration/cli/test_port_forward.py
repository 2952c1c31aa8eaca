"""`pilotfish port-forward` against a real control plane: the tutorials' `kubectl port-forward
svc/kiali -n istio-system 20001:20001` forwards a local port to the dashboard the control
plane serves (Istio's Kiali addon), and the printed sign-in link works through the forward;
an unknown Service is refused naming it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from tests.integration.harness import ControlPlane

pytestmark = pytest.mark.integration


def test_port_forward_svc_kiali_reaches_the_dashboard(
    control_plane_factory: Callable[..., ControlPlane], free_port: Callable[[], int]
) -> None:
    dashboard = free_port()
    cp = control_plane_factory("--dashboard-listen", f"127.0.0.1:{dashboard}")
    local = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.cli.main", "port-forward", "svc/kiali",
         "-n", "istio-system", f"{local}:20001"],
        env=cp.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"Forwarding from 127.0.0.1:{local} -> {dashboard}"), first
        link = proc.stdout.readline().split()[-1]
        assert link.startswith(f"http://127.0.0.1:{local}/login/"), link
        page = httpx.get(f"http://127.0.0.1:{local}/", timeout=10)
        assert page.status_code == 200 and "/static/app.js" in page.text
        with httpx.Client(timeout=10) as browser:
            signed = browser.get(link)
            assert signed.status_code == 302, signed.text
            session = browser.get(f"http://127.0.0.1:{local}/api/session")
            assert session.json()["signedIn"] is True
        assert proc.poll() is None  # forwards until stopped, as kubectl
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()

    # the tutorial's ports: the dashboard listens on the asked port itself, as Kiali would
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.cli.main", "port-forward", "svc/kiali",
         "-n", "istio-system", f"{dashboard}:20001"],
        env=cp.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "nothing to relay" in first and f"127.0.0.1:{dashboard}" in first, first
        assert httpx.get(f"http://127.0.0.1:{dashboard}/", timeout=10).status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    res = cp.cli("port-forward", "svc/nothing", "-n", "default", "8080:80")
    assert res.returncode != 0
    assert "nothing" in res.stderr
