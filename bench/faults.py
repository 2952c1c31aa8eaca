"""Faults on the local mesh, timed: config churn, the control plane `kill -9`-ed, a rolling
restart, certificate and root rotation.

Run as root from the repository root::

    .venv/bin/python bench/faults.py [--rounds 3] [--only r1|r2|r4|r5]

It brings up a private mesh (own prefix, /24 and ports) with a 3-replica podinfo Deployment
behind the ingress gateway and a client sending requests through the gateway in a loop
(every 20 ms), then, each round:

- R1: 100 VirtualService / DestinationRule changes (``pilotfish.testing.config_churn``: weight
  flips, subsets added and dropped, load balancer and pool edits, routes added and removed)
  posted to the HTTP API one after the other (``--r1-pause`` apart, 0.12 s by default: most
  changes then get a push of their own). Measured: the time to apply them, and from the first
  apply to every proxy synced at the store's revision; requests answered and failed meanwhile.
- R2: `kill -9` of the control plane. Measured: from the kill to the new control plane's
  `/healthz` (the pod runtime starts it again by itself), and to every proxy (3 sidecars and
  the gateway) connected again and synced at the store's revision; the resync is the second
  minus the first (target: <= 2 s). Requests answered and failed meanwhile are counted.
- R4: `pilotfish rollout restart deployment/podinfo`, timed until `rollout status` reports
  it done, with the requests answered and failed meanwhile.

- R5: 10 s of load (with ``--only r5`` the sidecars' certificates live ``--secret-ttl``, 5 s,
  and renew at half of it), then ``pilotfish ca rotate-root``, timed to its end, with the wait
  after each step (every workload trusting the new root, signed by it, trusting it alone).

The tests (tests/e2e/test_faults.py) assert zero failed requests; this prints the times.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pod_startup import REPO, Api, free_port, private_mesh, ready

from pilotfish.platform.local.meshfile import load_mesh
from pilotfish.platform.local.runtime_mesh import mesh_down, mesh_up
from pilotfish.testing import config_churn

NS = "faults"
HOST = "faults.example.com"


def manifests(secret_ttl: str = "") -> list[dict[str, Any]]:
    container = {
        "name": "podinfod",
        "command": ["python3", "samples/flagger/podinfo.py"],
        "ports": [{"name": "http", "containerPort": 9898}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9898}},
    }
    route = {"destination": {"host": "podinfo", "port": {"number": 9898}}}
    template_meta: dict[str, Any] = {"labels": {"app": "podinfo"}}
    if secret_ttl:
        template_meta["annotations"] = {
            "proxy.istio.io/config": f"proxyMetadata:\n  SECRET_TTL: {secret_ttl}\n"
        }
    return [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NS, "labels": {"istio-injection": "enabled"}}},
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": {"name": "faults-gateway", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "ingressgateway"},
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                               "hosts": [HOST]}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "podinfo", "namespace": NS},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "podinfo"}},
                  "template": {"metadata": template_meta,
                               "spec": {"containers": [container]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "podinfo", "namespace": NS},
         "spec": {"selector": {"app": "podinfo"},
                  "ports": [{"name": "http", "port": 9898, "targetPort": 9898}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "podinfo", "namespace": NS},
         "spec": {"hosts": [HOST], "gateways": ["istio-system/faults-gateway"],
                  "http": [{"route": [route]}]}},
    ]  # fmt: skip


class Load:
    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: Counter[int] = Counter()
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self.stop.is_set():
                try:
                    r = http.get(self.url, headers={"Host": HOST})
                    self.seen[r.status_code] += 1
                    if r.status_code != 200:
                        self.errors.append(f"{time.strftime('%H:%M:%S')} {r.status_code} {r.text}")
                except httpx.HTTPError as exc:
                    self.seen[0] += 1
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {exc!r}")
                time.sleep(0.02)

    def counts(self) -> tuple[int, int]:
        total = sum(self.seen.values())
        return total, total - self.seen[200]


def wait(check: Any, what: str, timeout: float = 90, step: float = 0.01) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(step)
    raise SystemExit(f"not within {timeout}s: {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=["r1", "r2", "r4", "r5"], help="Run one fault only.")
    parser.add_argument(
        "--secret-ttl",
        default="5s",
        help="Workload certificate lifetime of the podinfo sidecars with --only r5",
    )
    parser.add_argument(
        "--r1-pause",
        type=float,
        default=0.12,
        help="Seconds between two R1 changes (0: back to back; 0.12, longer "
        "than the push debounce, gives most changes a push of their own)",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("this benchmark starts pods: run it as root", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="pilotfish-bench-"))
    s = dataclasses.replace(private_mesh(root), dashboard_port=free_port())
    r2: list[tuple[float, float, int, int]] = []
    r4: list[tuple[float, int, int]] = []
    r1: list[tuple[float, float, int, int]] = []
    r5: list[tuple[float, list[float], int, int, int]] = []
    env = {**os.environ, "PILOTFISH_CONFIG": str(root / "config")}
    pf = [sys.executable, "-P", "-m", "pilotfish.cli.main"]
    try:
        mesh_up(s)
        token = (s.data_dir / "admin-token").read_text().strip()
        api = Api(s.api_url, token)
        api.apply(manifests(args.secret_ttl if args.only == "r5" else ""))
        wait(lambda: len(p := api.pods(NS)) == 3 and all(ready(x) for x in p), "3 pods", step=0.2)
        load = Load(f"{s.gateway_url}/")
        wait(lambda: load.seen[200] >= 5, "answers through the gateway")

        def healthy() -> bool:
            try:
                return httpx.get(f"{s.api_url}/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        def resynced() -> bool:
            try:
                h = {"Authorization": f"Bearer {token}"}
                rev = int(httpx.get(f"{s.api_url}/version", timeout=1).json()["revision"])
                items = httpx.get(f"{s.api_url}/apis/pilotfish.io/v1/proxystatus", headers=h,
                                  timeout=1).json()["items"]  # fmt: skip
            except (httpx.HTTPError, ValueError, KeyError):
                return False
            return len(items) == 4 and all(
                p.get("synced") and int(p.get("config_revision") or 0) >= rev for p in items
            )

        def run(fault: str) -> bool:
            return args.only in (None, fault)

        for _ in range(args.rounds):
            wait(resynced, "every proxy synced before the round", step=0.1)
            if run("r1"):
                changes = list(config_churn.churn(
                    100, name="podinfo", namespace=NS, host=HOST,
                    gateways=["istio-system/faults-gateway"], service="podinfo", port=9898,
                    labels={"app": "podinfo"}))  # fmt: skip
                before = load.counts()
                t0 = time.monotonic()
                for change in changes:
                    api.apply([change])
                    time.sleep(args.r1_pause)
                t_applied = time.monotonic() - t0
                t_synced = wait(resynced, "every proxy synced after the changes", step=0.02) - t0
                after = load.counts()
                r1.append((t_applied, t_synced, after[0] - before[0], after[1] - before[1]))
                api.apply([manifests()[-1]])
                api.http.delete(f"/apis/networking.istio.io/v1/namespaces/{NS}/"
                                "destinationrules/podinfo")  # fmt: skip
                wait(resynced, "every proxy synced after the reset", step=0.1)
            if run("r2"):
                pid = int((load_mesh(s.state_dir) or {})["server"]["pid"])
                before = load.counts()
                t0 = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                wait(lambda: not healthy(), "the control plane gone", step=0.005)
                t_up = wait(healthy, "the control plane restarted") - t0
                t_sync = wait(resynced, "every proxy resynced") - t0
                after = load.counts()
                r2.append((t_up, t_sync, after[0] - before[0], after[1] - before[1]))
            if run("r4"):
                wait(resynced, "every proxy synced before the rollout", step=0.1)
                before = load.counts()
                t0 = time.monotonic()
                for verb in ("restart", "status"):
                    subprocess.run([*pf, "rollout", verb, "deployment/podinfo", "-n", NS],
                                   env=env, check=True, capture_output=True, cwd=REPO)  # fmt: skip
                t_roll = time.monotonic() - t0
                after = load.counts()
                r4.append((t_roll, after[0] - before[0], after[1] - before[1]))
            if run("r5"):
                wait(resynced, "every proxy synced before the rotation", step=0.1)
                log = s.logs_dir / "server.log"
                signed = log.read_text(errors="replace").count(f"/ns/{NS}/sa/default ")
                before = load.counts()
                # Workload certificates renew meanwhile (with --only r5, every SECRET_TTL / 2).
                time.sleep(10)
                t0 = time.monotonic()
                out = subprocess.run([*pf, "ca", "rotate-root"], env=env, check=True,
                                     capture_output=True, text=True, cwd=REPO).stdout  # fmt: skip
                t_rot = time.monotonic() - t0
                after = load.counts()
                # The last "k/N workloads (X.Xs)" line of each step: its wait.
                waits: list[float] = []
                for line in out.splitlines():
                    if line.startswith("step "):
                        waits.append(0.0)
                    elif "workloads (" in line and waits:
                        waits[-1] = float(line.rsplit("(", 1)[1].rstrip("s)"))
                renewed = log.read_text(errors="replace").count(f"/ns/{NS}/sa/default ") - signed
                r5.append((t_rot, waits, renewed, after[0] - before[0], after[1] - before[1]))
        load.stop.set()
        for line in load.errors[:10]:
            print("failed:", line[:300])
    finally:
        mesh_down(s)
    print_figures(r1, r2, r4, r5)
    return 0


def print_figures(
    r1: list[tuple[float, float, int, int]],
    r2: list[tuple[float, float, int, int]],
    r4: list[tuple[float, int, int]],
    r5: list[tuple[float, list[float], int, int, int]],
) -> None:
    def ms(v: float) -> str:
        return f"{v * 1000:.0f} ms"

    med = statistics.median
    print("Faults on the local mesh (2-core shared machine; times are indicative)")
    if r1:
        print(f"R1 100 changes applied                     median {ms(med(x[0] for x in r1))}  "
              f"({', '.join(ms(x[0]) for x in r1)})")  # fmt: skip
        print(f"R1 first apply -> every proxy synced        median {ms(med(x[1] for x in r1))}  "
              f"({', '.join(ms(x[1]) for x in r1)})")  # fmt: skip
        print(f"R1 requests during the changes: {sum(x[2] for x in r1)}, failed "
              f"{sum(x[3] for x in r1)}")  # fmt: skip
    if r2:
        print(f"R2 kill -9 -> control plane restarted      median {ms(med(x[0] for x in r2))}  "
              f"({', '.join(ms(x[0]) for x in r2)})")  # fmt: skip
        print(f"R2 kill -9 -> every proxy resynced         median {ms(med(x[1] for x in r2))}  "
              f"({', '.join(ms(x[1]) for x in r2)})")  # fmt: skip
        resync = [x[1] - x[0] for x in r2]
        print(f"R2 restarted -> resynced (target <= 2 s)   median "
              f"{ms(med(resync))}, max {ms(max(resync))}")  # fmt: skip
        print(f"R2 requests during the outage: {sum(x[2] for x in r2)}, failed "
              f"{sum(x[3] for x in r2)}")  # fmt: skip
    if r4:
        print(f"R4 rollout restart of 3 replicas           median {ms(med(x[0] for x in r4))}  "
              f"({', '.join(ms(x[0]) for x in r4)})")  # fmt: skip
        print(f"R4 requests during the rollouts: {sum(x[1] for x in r4)}, failed "
              f"{sum(x[2] for x in r4)}")  # fmt: skip

    if r5:
        print(f"R5 ca rotate-root (3 steps, waited)        median {ms(med(x[0] for x in r5))}  "
              f"({', '.join(ms(x[0]) for x in r5)})")  # fmt: skip
        for i, step in enumerate(("add", "activate", "retire")):
            waits = [x[1][i] for x in r5 if len(x[1]) > i]
            if waits:
                print(f"R5   {step:<9} -> every workload followed     median "
                      f"{ms(med(waits))}, max {ms(max(waits))}")  # fmt: skip
        print(f"R5 certificates signed for the podinfo sidecars meanwhile: "
              f"{sum(x[2] for x in r5)}")  # fmt: skip
        print(f"R5 requests during the rotations: {sum(x[3] for x in r5)}, failed "
              f"{sum(x[4] for x in r5)}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
