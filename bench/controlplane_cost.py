"""Control-plane cost per connected proxy: resident memory and CPU time of ``pilotfish server``.

Run from the repository root::

    .venv/bin/python bench/controlplane_cost.py             # 100 services; 100, then 500 proxies
    .venv/bin/python bench/controlplane_cost.py --quick     # 3 services; 2 proxies

It starts a control plane (SQLite store), applies ``--services`` Services with DestinationRules
and one VirtualService, and reads the server process's ``VmRSS`` (``/proc/PID/status``) and
``utime + stime`` (``/proc/PID/stat``):

- with 0 proxies (the baseline);
- after connecting simulated proxies (``AdsClient`` Delta streams in this process) until each
  size of ``--proxies`` is connected and synced: memory per proxy is the RSS growth over the
  baseline divided by the number of proxies; CPU per proxy of connecting is the CPU spent
  connecting and syncing the new ones (it includes re-pushing endpoints to the others, since
  every new proxy is an endpoint of a service);
- over ``--pushes`` VirtualService weight changes, each waited for until every client ACKed
  the new routes (checked in this process, not with ``proxystatus``, so that polling costs the
  server nothing): CPU ms per proxy per push is the server's CPU time over the pushes divided
  by pushes x proxies, after subtracting the idle CPU measured over ``--idle`` seconds.

Targets: <= 1 MB per proxy. No exit code depends on the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script (``python bench/controlplane_cost.py``): the helpers live next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    Fleet,
    Processes,
    all_synced,
    cpu_seconds,
    cpu_split,
    machine,
    ratio,
    rss_mb,
    service_items,
    start_control_plane,
    table,
    weighted_route,
)

from pilotfish.xds.resources import ROUTE_TYPE, VIRTUAL_HOST_TYPE

MB_PER_PROXY_TARGET = 1.0
ROUTE_HOST = "svc-0"


@dataclass
class Point:
    proxies: int
    rss_mb: float
    connect_cpu_s: float  # CPU spent connecting the proxies added for this point
    added: int
    idle_cpu_per_s: float  # CPU seconds per second while nothing happens
    push_cpu_s: float  # CPU over all pushes, idle subtracted
    pushes: int
    rss_after_pushes_mb: float


def settle(pid: int, seconds: float) -> float:
    """Idle CPU rate of ``pid`` (CPU seconds per second) over ``seconds``."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def push_and_wait(
    fleet: Fleet, v1_weight: int, apply: Callable[[list[dict[str, Any]]], None], timeout: float
) -> None:
    """Apply a weight change; wait until every client ACKed a new route version (route
    configs, or virtual hosts over VHDS)."""

    def routes(c: Any) -> tuple[str, str]:
        return c.acked_version(ROUTE_TYPE), c.acked_version(VIRTUAL_HOST_TYPE)

    before = [routes(c) for c in fleet.clients]
    apply([weighted_route(ROUTE_HOST, v1_weight)])
    deadline = time.monotonic() + timeout
    while True:
        if all(routes(c) != old for c, old in zip(fleet.clients, before, strict=True)):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"not every client ACKed the weight change after {timeout:.0f}s")
        time.sleep(0.02)


def run(args: argparse.Namespace, procs: Processes) -> tuple[float, list[Point]]:
    server_cpus, _ = cpu_split(not args.no_pin)
    cp = start_control_plane(procs, cpus=server_cpus)
    api = cp.api()
    api.apply([*service_items(args.services), weighted_route(ROUTE_HOST, 50)])
    settle(cp.pid, args.idle)
    baseline = rss_mb(cp.pid)
    points = []
    weight = 50
    with Fleet(cp, args.services) as fleet:
        for size in args.proxies:
            added = size - len(fleet.clients)
            c0 = cpu_seconds(cp.pid)
            fleet.grow(size, lambda n: all_synced(api.proxy_status(), n))
            connect_cpu = cpu_seconds(cp.pid) - c0
            idle = settle(cp.pid, args.idle)
            rss = rss_mb(cp.pid)
            c0, t0 = cpu_seconds(cp.pid), time.monotonic()
            for _ in range(args.pushes):
                weight = 90 if weight != 90 else 10
                push_and_wait(fleet, weight, api.apply, timeout=300)
            time.sleep(0.2)  # the last ACKs reach the server
            push_cpu = max(0.0, cpu_seconds(cp.pid) - c0 - idle * (time.monotonic() - t0))
            statuses = api.proxy_status()
            if not all_synced(statuses, size):
                raise SystemExit(f"{size} proxies are not all synced after the pushes")
            points.append(
                Point(size, rss, connect_cpu, added, idle, push_cpu, args.pushes, rss_mb(cp.pid))
            )
            print(f"  {size} proxies measured", flush=True)
    procs.stop(cp.proc)
    return baseline, points


def report(baseline: float, points: list[Point], services: int) -> str:
    headers = [
        "proxies",
        "services",
        "RSS MB",
        "MB/proxy",
        "MB/proxy after pushes",
        "target MB/proxy",
        "ratio to target",
        "connect CPU ms/proxy",
        "push CPU ms/proxy/push",
        "idle CPU %",
    ]
    rows: list[list[object]] = [[0, services, f"{baseline:.1f}", "-", "-", "-", "-", "-", "-", "-"]]
    for p in points:
        per = (p.rss_mb - baseline) / p.proxies
        after = (p.rss_after_pushes_mb - baseline) / p.proxies
        rows.append(
            [
                p.proxies,
                services,
                f"{p.rss_mb:.1f}",
                f"{per:.3f}",
                f"{after:.3f}",
                f"{MB_PER_PROXY_TARGET:.1f}",
                ratio(after, MB_PER_PROXY_TARGET),
                f"{p.connect_cpu_s * 1000 / max(p.added, 1):.1f}",
                f"{p.push_cpu_s * 1000 / max(p.pushes * p.proxies, 1):.2f}",
                f"{p.idle_cpu_per_s * 100:.1f}",
            ]
        )
    return table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--proxies", default="100,500", help="Sizes, in increasing order.")
    parser.add_argument("--pushes", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="Seconds to measure idle CPU.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes.")
    parser.add_argument("--no-pin", action="store_true", help="Do not pin processes to CPUs.")
    parser.add_argument("--workdir", type=Path, help="Keep logs here (default: a temp dir).")
    args = parser.parse_args(argv)
    if args.quick:
        args.services, args.proxies, args.pushes, args.idle = 3, "2", 1, 0.2
    args.proxies = sorted({int(x) for x in str(args.proxies).split(",") if int(x) > 0})
    _, load_cpus = cpu_split(not args.no_pin)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # before the client thread starts
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pilotfish-bench-cost-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"control-plane cost on {machine()}; work dir {workdir}", flush=True)
    with Processes(workdir) as procs:
        baseline, points = run(args, procs)
    print()
    print(report(baseline, points, args.services))
    print(
        "MB/proxy: server RSS growth over the 0-proxy baseline per connected proxy (Python "
        "keeps freed memory, so 'after pushes' includes push garbage); ratios below 1.00x meet "
        "the target. CPU: server utime+stime; push CPU has idle CPU subtracted."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
