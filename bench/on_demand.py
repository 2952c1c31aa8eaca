"""Sidecar memory in a big mesh with on-demand clusters, against a mesh of 3 services.

Run from the repository root::

    .venv/bin/python bench/on_demand.py [--services 500] [--first-calls 20]

Side by side in one run, four control planes (``pilotfish server``, SQLite) each with one
client sidecar (``pilotfish proxy``, explicit mode, real Envoy, Delta xDS):

- ``3 services``: a mesh of the 3 services the client calls (the reference);
- ``N, on demand``: N services, mesh config ``onDemandClusters: true``;
- ``N, default``: N services, every cluster pushed (what on demand saves);
- ``N, Sidecar``: N services and a namespace Sidecar whose egress lists the 3 services.

Every service selects one WorkloadEntry: an Envoy answering every request itself on a
loopback address, so each service has one endpoint. The client calls each of the 3 services
5 times; after a short settle, the client's memory is read from /proc: Envoy's RSS and PSS,
and the agent's PSS (``smaps_rollup``: shared pages counted once). The ratio of the sidecar's
memory (Envoy PSS + agent PSS) to the reference is printed with its target (<= 1.1x).

Then the first-call latency: the client calls ``--first-calls`` services it never called,
once each (a first call) and then again (a repeat), in the on-demand mesh and in the default
one; the extra latency of on demand is the median first call there minus the median first call
in the default mesh (which also opens a new upstream connection).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    ControlPlane,
    Processes,
    Sidecar,
    envoy_pid,
    free_loopback_ip,
    free_port,
    machine,
    median,
    start_control_plane,
    start_sidecar,
    table,
    wait_until,
)
from static_envoy import backend_bootstrap, start_envoy

CALLED = 3
TARGET = 1.1


def services(count: int, backend: tuple[str, int]) -> list[dict[str, Any]]:
    """``count`` Services ``svc-N`` on port 9080 and one WorkloadEntry all of them select."""
    ip, port = backend
    items: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": "backend", "namespace": "default"},
            "spec": {"address": ip, "labels": {"tier": "bench"}, "ports": {"http": port}},
        }
    ]
    for i in range(count):
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": f"svc-{i}", "namespace": "default"},
                "spec": {
                    "selector": {"tier": "bench"},
                    "ports": [{"name": "http", "port": 9080}],
                },
            }
        )
    return items


def on_demand_mesh() -> dict[str, Any]:
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "on-demand", "namespace": "istio-system"},
        "spec": {"meshConfig": {"onDemandClusters": True}},
    }


def sidecar_of_called() -> dict[str, Any]:
    hosts = [f"./svc-{i}.default.svc.cluster.local" for i in range(CALLED)]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "default"},
        "spec": {"egress": [{"hosts": hosts}]},
    }


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for pid {pid}")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


_HTTP = httpx.Client(timeout=10)


def call(sc: Sidecar, i: int) -> float:
    """One GET from the client's app to ``svc-i`` through its sidecar (a kept-alive
    connection to the sidecar); seconds."""
    start = time.perf_counter()
    r = _HTTP.get(f"http://127.0.0.1:{sc.outbound_port}/", headers={"Host": f"svc-{i}:9080"})
    elapsed = time.perf_counter() - start
    if r.status_code != 200:
        raise SystemExit(f"svc-{i} answered {r.status_code}: {r.text[:200]}")
    return elapsed


def clusters(sc: Sidecar) -> int:
    dump = httpx.get(f"http://127.0.0.1:{sc.admin_port}/clusters?format=json", timeout=5).json()
    return sum(1 for c in dump.get("cluster_statuses", []) if c["name"].startswith("outbound|"))


class Setup:
    def __init__(
        self, procs: Processes, name: str, count: int, backend: tuple[str, int], extra: list[Any]
    ) -> None:
        self.name = name
        self.cp: ControlPlane = start_control_plane(procs, name)
        self.cp.api().apply(extra + services(count, backend))
        self.client = start_sidecar(procs, self.cp, f"client-{name}", {"app": "client"})

    def ready(self) -> bool:
        if not self.client.ready():
            return False
        try:
            call(self.client, 0)
        except (SystemExit, httpx.HTTPError):
            return False
        return True

    def memory(self) -> tuple[float, float, float]:
        agent = self.client.proc.pid
        envoy = envoy_pid(agent)
        return rss_mb(envoy), pss_mb(envoy), pss_mb(agent)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--first-calls", type=int, default=20)
    args = parser.parse_args()
    n = args.services
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-bench-on-demand-"))
    with Processes(workdir) as procs:
        port = free_port()
        ip = free_loopback_ip(port)
        backend = start_envoy(procs, "backend", backend_bootstrap(ip, port, free_port()), None)
        wait_until(backend.ready, 30, "the backend")
        setups = [
            Setup(procs, "three", CALLED, (ip, port), []),
            Setup(procs, "ondemand", n, (ip, port), [on_demand_mesh()]),
            Setup(procs, "default", n, (ip, port), []),
            Setup(procs, "sidecar", n, (ip, port), [sidecar_of_called()]),
        ]
        for s in setups:
            wait_until(s.ready, 180, f"the client of {s.name} to route")
        for s in setups:
            for _ in range(5):
                for i in range(CALLED):
                    call(s.client, i)
        time.sleep(3)
        mem = {s.name: s.memory() for s in setups}
        outbound = {s.name: clusters(s.client) for s in setups}
        ref = mem["three"][1] + mem["three"][2]
        labels = {
            "three": f"{CALLED} services",
            "ondemand": f"{n}, on demand",
            "default": f"{n}, default",
            "sidecar": f"{n}, Sidecar (3 hosts)",
        }
        rows = []
        for s in setups:
            envoy_rss, envoy_pss, agent_pss = mem[s.name]
            total = envoy_pss + agent_pss
            rows.append(
                [
                    labels[s.name],
                    outbound[s.name],
                    f"{envoy_rss:.1f}",
                    f"{envoy_pss:.1f}",
                    f"{agent_pss:.1f}",
                    f"{total:.1f}",
                    f"{total / ref:.3f}x",
                    f"<= {TARGET}x" if s.name == "ondemand" else "",
                ]
            )
        print(f"# Sidecar memory, calling {CALLED} services ({machine()})\n")
        print(
            table(
                [
                    "mesh",
                    "outbound clusters",
                    "Envoy RSS MB",
                    "Envoy PSS MB",
                    "agent PSS MB",
                    "sidecar MB",
                    "vs 3 services",
                    "target",
                ],
                rows,
            )
        )

        # First calls: services the client never called, in the on-demand and default meshes.
        latency: dict[str, tuple[float, float]] = {}
        picks = list(range(CALLED, min(n, CALLED + args.first_calls)))
        for s in (setups[1], setups[2]):
            first = [call(s.client, i) for i in picks]
            again = [call(s.client, i) for i in picks]
            latency[s.name] = (median(first), median(again))
        on_first = latency["ondemand"][0]
        def_first = latency["default"][0]
        print(f"\n# First call to a service never called ({len(picks)} services, median ms)\n")
        print(
            table(
                ["mesh", "first call", "second call", "first - second"],
                [
                    [labels[k], f"{a * 1e3:.2f}", f"{b * 1e3:.2f}", f"{(a - b) * 1e3:.2f}"]
                    for k, (a, b) in latency.items()
                ],
            )
        )
        print(
            f"\nextra latency of a first call on demand: {(on_first - def_first) * 1e3:.2f} ms "
            f"(first call {on_first * 1e3:.2f} ms vs {def_first * 1e3:.2f} ms with every "
            f"cluster pushed)"
        )
        ratio = (mem["ondemand"][1] + mem["ondemand"][2]) / ref
        verdict = "meets" if ratio <= TARGET else "misses"
        print(
            f"sidecar memory, {n} services on demand vs {CALLED}: {ratio:.3f}x "
            f"(target <= {TARGET}x: {verdict})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
