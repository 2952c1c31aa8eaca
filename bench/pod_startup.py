"""Local runtime startup times: a pod from created to ready, and `make demo`'s bring-up.

Run as root from the repository root::

    .venv/bin/python bench/pod_startup.py [--rounds 5]

It brings up a private mesh (own prefix, /24 and ports, in a temporary directory), then:

- creates Deployments of one replica, one at a time, in a namespace without injection and in
  one with injection (after one of each that is not counted: the first pod of a service
  account also fetches its workload token), and measures through the API (a watch on the
  namespace's pods) the time from the Pod object's commit to its ``Ready`` condition's (with a
  sidecar: against the target of 0.3 s), and from the Deployment's apply to ``Ready``; then
  prints where a sidecar pod's start goes, step by step, from the runtime's log;
- times ``pilotfish up`` and then Bookinfo: apply + all six pods ready (what `make demo` waits
  for after `up`);

prints the figures and always brings the mesh down again. The pod app is a one-line stdlib
HTTP server; readiness means its port accepts connections (and, injected, Envoy is ready).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from pilotfish.platform.local.network import PodNetworkSettings
from pilotfish.platform.local.runtime_mesh import MeshSettings, mesh_down, mesh_up

REPO = Path(__file__).resolve().parents[1]
APP = (
    "import http.server as h; h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cidr() -> str:
    out = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True).stdout
    used = [
        ipaddress.ip_network(r["dst"], strict=False)
        for r in json.loads(out or "[]")
        if r.get("dst") not in (None, "default")
    ]
    while True:
        net = ipaddress.ip_network(f"10.{random.randint(200, 249)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return str(net)


def private_mesh(root: Path) -> MeshSettings:
    """A mesh of its own under ``root``: its own prefix, /24 and ports (Prometheus and the
    trace query API and the dashboard included), so it runs beside any other."""
    prefix = "b" + "".join(random.choice(string.ascii_lowercase) for _ in range(4))
    gw = free_port()
    return MeshSettings(
        data_dir=root / "data",
        state_dir=root / "state",
        api_listen=f"127.0.0.1:{free_port()}",
        xds_port=free_port(),
        gateway_ports=((80, gw), (8080, gw)),
        gateway_admin_port=free_port(),
        gateway_agent_port=free_port(),
        gateway_readiness_port=free_port(),
        network=PodNetworkSettings(prefix=prefix, pod_cidr=free_cidr()),
        workdir=REPO,
        env=(("PILOTFISH_CONFIG", str(root / "config")),),
        prometheus_port=free_port(),
        dashboard_port=free_port(),
        trace_query_port=free_port(),
    )


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        )

    def apply(self, items: list[dict[str, Any]]) -> None:
        resp = self.http.post(
            "/apis/pilotfish.io/v1/apply",
            json={"items": items, "sources": [], "namespace": None, "dryRun": False},
        )
        resp.raise_for_status()

    def revision(self) -> int:
        """The store's revision now (a watch from it sees every later change)."""
        resp = self.http.get("/api/v1/namespaces/default/pods")
        resp.raise_for_status()
        return int((resp.json().get("metadata") or {}).get("resourceVersion") or 0)

    def pods(self, namespace: str) -> list[dict[str, Any]]:
        resp = self.http.get(f"/api/v1/namespaces/{namespace}/pods")
        resp.raise_for_status()
        return list(resp.json().get("items") or [])


def ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def deployment(
    name: str, namespace: str, command: list[str] | None = None, port: int | None = 8080
) -> dict[str, Any]:
    """A one-replica Deployment of ``command`` (default: the one-line HTTP server) declaring
    ``port`` (readiness waits for it to accept connections; ``None``: no port)."""
    container: dict[str, Any] = {"name": "app", "command": command or ["python3", "-c", APP]}
    if port is not None:
        container["ports"] = [{"containerPort": port}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
        },
    }


def time_pod(api: Api, namespace: str, name: str, timeout: float = 60) -> tuple[float, float]:
    """(created -> ready, apply -> ready) in seconds for one new one-replica Deployment.

    Times come from a watch on the namespace's pods, opened before the apply: the moment the
    Pod object is committed and the moment its ``Ready`` condition is, each as the event
    arrives (no polling: a poll loop would add up to its period at each end, and its
    requests load the API on the machine being measured)."""
    seen: dict[str, float] = {}
    done = threading.Event()
    opened = threading.Event()

    def follow() -> None:
        with api.http.stream(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods",
            params={"watch": "true", "resourceVersion": str(api.revision())},
            timeout=httpx.Timeout(10, read=timeout),
        ) as resp:
            resp.raise_for_status()
            opened.set()
            for line in resp.iter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                pod = event.get("object") or {}
                if not str((pod.get("metadata") or {}).get("name", "")).startswith(name + "-"):
                    continue
                now = time.monotonic()
                seen.setdefault("created", now)
                if event.get("type") != "DELETED" and ready(pod):
                    seen["ready"] = now
                    done.set()
                    return

    watcher = threading.Thread(target=follow, daemon=True, name=f"watch-{name}")
    watcher.start()
    if not opened.wait(10):
        raise SystemExit(f"no watch on {namespace}'s pods")
    t_apply = time.monotonic()
    api.apply([deployment(name, namespace)])
    if not done.wait(timeout):
        raise SystemExit(f"pod {namespace}/{name} not ready after {timeout}s")
    return seen["ready"] - seen["created"], seen["ready"] - t_apply


#: Issue #16's target for a pod with a sidecar, created -> Ready.
SIDECAR_TARGET_S = 0.3


def summary(label: str, values: list[float], target: float | None = None) -> str:
    ms = sorted(v * 1000 for v in values)
    median = statistics.median(ms)
    line = (
        f"{label:<44} median {median:7.0f} ms   min {ms[0]:6.0f}   "
        f"max {ms[-1]:6.0f}   (n={len(ms)})"
    )
    if target is not None:
        line += f"   target <= {target * 1000:.0f} ms   ratio {median / (target * 1000):.2f}"
    return line


def timelines(runtime_log: Path, namespace: str, skip: str = "") -> dict[str, list[float]]:
    """Each step of the sidecar pods' start (ms after the runtime started the pod), from the
    runtime's "pod ... ready in" lines: netns, token, agent, network, capture, apps, apps_ready,
    sidecar_ready, ready."""
    steps: dict[str, list[float]] = {}
    prefix = f"pod {namespace}/"
    for line in runtime_log.read_text(errors="replace").splitlines():
        if prefix not in line or " ready in " not in line or "(timeline " not in line:
            continue
        if skip and f"{prefix}{skip}" in line:
            continue
        marks = json.loads(line.rsplit("(timeline ", 1)[1].rstrip(")"))
        start = marks.pop("start")
        for step, at in marks.items():
            steps.setdefault(step, []).append((at - start) * 1000)
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("this benchmark starts pods: run it as root", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="pilotfish-bench-"))
    settings = private_mesh(root)
    try:
        t0 = time.monotonic()
        mesh_up(settings)
        t_up = time.monotonic() - t0
        api = Api(settings.api_url, (settings.data_dir / "admin-token").read_text().strip())
        api.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}},
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": "meshed", "labels": {"istio-injection": "enabled"}},
                },
            ]
        )
        results: dict[str, list[tuple[float, float]]] = {"plain": [], "meshed": []}
        for ns in results:  # a first pod of each kind, not counted (first token, warm-up)
            time_pod(api, ns, f"{ns[0]}w")
        for i in range(args.rounds):
            for ns in results:
                results[ns].append(time_pod(api, ns, f"{ns[0]}{i}"))
        steps = timelines(settings.logs_dir / "runtime.log", "meshed", skip="mw-")
        # Bookinfo, as `make demo` runs it after `up`.
        env = {**os.environ, "PILOTFISH_CONFIG": str(root / "config")}
        pf = [sys.executable, "-P", "-m", "pilotfish.cli.main"]
        t0 = time.monotonic()
        subprocess.run(
            [*pf, "label", "namespace", "default", "istio-injection=enabled"],
            env=env,
            check=True,
            capture_output=True,
        )
        for f in (
            "platform/bookinfo.yaml",
            "networking/bookinfo-gateway.yaml",
            "networking/destination-rule-all.yaml",
        ):
            subprocess.run(
                [*pf, "apply", "-f", str(REPO / "samples/bookinfo" / f)],
                env=env,
                check=True,
                capture_output=True,
                cwd=REPO,
            )
        while True:
            pods = api.pods("default")
            if len(pods) == 6 and all(ready(p) for p in pods):
                break
            if time.monotonic() - t0 > 120:
                raise SystemExit("Bookinfo not ready after 120 s")
            time.sleep(0.02)
        t_bookinfo = time.monotonic() - t0
        page = httpx.get(f"{settings.gateway_url}/productpage", timeout=10)
        assert page.status_code == 200 and "Simple Bookstore App" in page.text
    finally:
        mesh_down(settings)
    print("Local runtime startup (2-core shared machine; absolute times are indicative)")
    print(summary("pod created -> ready, no sidecar", [r[0] for r in results["plain"]]))
    print(
        summary(
            "pod created -> ready, with sidecar",
            [r[0] for r in results["meshed"]],
            SIDECAR_TARGET_S,
        )
    )
    print(summary("deployment applied -> pod ready, no sidecar", [r[1] for r in results["plain"]]))
    print(
        summary("deployment applied -> pod ready, with sidecar", [r[1] for r in results["meshed"]])
    )
    print(f"{'pilotfish up (control plane, runtime, gateway)':<44} {t_up * 1000:7.0f} ms")
    print(f"{'Bookinfo applied -> 6 pods ready':<44} {t_bookinfo * 1000:7.0f} ms")
    print(f"{'make demo bring-up (up + Bookinfo ready)':<44} {(t_up + t_bookinfo) * 1000:7.0f} ms")
    print("Sidecar pod start, step by step (ms after the runtime starts the pod; median, range):")
    order = sorted(steps, key=lambda k: statistics.median(steps[k]))
    for step in order:
        ms = steps[step]
        print(f"  {step:<16} {statistics.median(ms):6.0f}   ({min(ms):.0f}-{max(ms):.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
