"""The Istio tutorials' istioctl/kubectl commands, with `pilotfish` in their place, on a real
local mesh installed with the demo profile (docs/operating.md, "The tutorials' commands"):
each runs as the tutorials write it and does what they say."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.e2e.conftest import REPO, Mesh, bring_up, free_port
from tests.e2e.test_install import WEB

pytestmark = pytest.mark.e2e


@contextmanager
def forwarding(mesh: Mesh, *args: str) -> Iterator[str]:
    """`pilotfish port-forward ARGS...` running; yields its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pilotfish.cli.main", "port-forward", *args],
        env=mesh.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Forwarding from"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        yield line
        assert proc.poll() is None  # forwards until stopped
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_tutorial_commands_on_the_demo_profile(tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("tutorial")
    # istioctl install --set profile=demo -y
    with bring_up(root, ("install", "--set", "profile=demo", "-y")) as mesh:
        # kubectl label namespace default istio-injection=enabled
        out = mesh.cli("label", "namespace", "default", "istio-injection=enabled").stdout
        assert "namespace/default labeled" in out
        manifest = root / "web.json"
        manifest.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": WEB[1:]}))
        mesh.cli("apply", "-f", str(manifest))
        pod = mesh.wait_pods_ready("default", 1, timeout=60)[0]["metadata"]["name"]

        # kubectl get pods -n istio-system: the demo profile's egress gateway
        out = mesh.cli("get", "pods", "-n", "istio-system").stdout
        assert re.search(r"istio-egressgateway-\S+\s+1/1\s+Running", out), out
        # istioctl verify-install: every part healthy, the egress gateway pod included
        res = mesh.run("pilotfish.cli.main", "verify-install", check=False)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "✔ iptables:" in res.stdout

        # istioctl proxy-status / proxy-config cluster|route|listener|dump POD / analyze
        assert f"{pod}.default" in mesh.cli("proxy-status").stdout
        clusters = mesh.cli("proxy-config", "cluster", pod).stdout
        assert "web.default.svc.cluster.local" in clusters
        assert "VHOST NAME" in mesh.cli("proxy-config", "route", pod).stdout
        assert "15006" in mesh.cli("proxy-config", "listener", pod).stdout
        dump = json.loads(mesh.cli("proxy-config", "dump", pod).stdout)
        assert dump["configs"][0]["@type"].endswith("BootstrapConfigDump")
        assert mesh.cli("analyze", check=False).returncode in (0, 79)

        # kubectl logs POD -c istio-proxy; kubectl exec -it POD -c istio-proxy -- pilot-agent ...
        assert "starting Envoy" in mesh.cli("logs", pod, "-c", "istio-proxy").stdout
        stats = mesh.cli(
            "exec", "-it", pod, "-c", "istio-proxy", "--", "pilot-agent", "request", "GET", "stats"
        ).stdout
        assert "server.live: 1" in stats

        # kubectl apply -f samples/addons: on the demo profile every addon runs already
        out = mesh.cli("apply", "-f", str(REPO / "samples" / "addons")).stdout
        assert f"prometheus running already: {mesh.prometheus}" in out, out
        assert f"dashboard running already: {mesh.dashboard}" in out, out
        assert "trace collector running already" in out, out

        # istioctl dashboard kiali (no display: the link is printed)
        out = mesh.cli("dashboard", "kiali").stdout
        assert f"{mesh.dashboard}/login/" in out

        # kubectl port-forward svc/kiali -n istio-system 20001:20001 (another local port here)
        local = free_port()
        with forwarding(mesh, "svc/kiali", "-n", "istio-system", f"{local}:20001"):
            page = httpx.get(f"http://127.0.0.1:{local}/", timeout=10)
            assert page.status_code == 200 and "/static/app.js" in page.text
        # kubectl port-forward to a Deployment's pod: the app itself, through its netns
        local = free_port()
        with forwarding(mesh, "deploy/web", f"{local}:8000"):
            assert httpx.get(f"http://127.0.0.1:{local}/", timeout=10).status_code == 200

        # kubectl get pods -w: the list, then changes
        proc = subprocess.Popen(
            [sys.executable, "-m", "pilotfish.cli.main", "get", "pods", "-w"],
            env=mesh.env, cwd=REPO, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().split()[:2] == ["NAME", "READY"]
            assert proc.stdout.readline().startswith(pod)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()

        # kubectl apply -f mtls-strict.yaml; kubectl delete the policy
        strict = str(REPO / "samples/tutorials/peer-authentication-strict-mesh.yaml")
        assert "created" in mesh.cli("apply", "-f", strict).stdout
        out = mesh.cli("delete", "peerauthentication", "default", "-n", "istio-system").stdout
        assert "peerauthentication.security.istio.io/default deleted" in out
