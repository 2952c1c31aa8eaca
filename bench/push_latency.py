"""xDS push latency: from applying a VirtualService weight change (over the HTTP API) until
every connected proxy has ACKed the new configuration.

Run from the repository root::

    .venv/bin/python bench/push_latency.py            # 1, 10, 50, 100 Envoys; 500 simulated
    .venv/bin/python bench/push_latency.py --envoys 100 --simulated 0 --bare-envoys
    .venv/bin/python bench/push_latency.py --quick    # 1 Envoy, 2 simulated proxies

Two parts, each with its own control plane (``pilotfish server``, SQLite store):

- real Envoys: sidecar agents (``pilotfish proxy``, explicit mode, ``--concurrency 1``) on
  random 127.x.y.z addresses, added until there are 1, 10, 50, then 100 of them; with
  ``--bare-envoys`` Envoy alone with the bootstrap the agent writes (no agent process beside
  each Envoy: 100 agents take ~8 GB more memory; the xDS traffic is the same);
- simulated proxies: ``AdsClient`` streams (Delta, ACKing like Envoy) in this process, with
  500 Services and DestinationRules applied first.

For each size, ``--reps`` times: flip the weights of one VirtualService; on real Envoys also
add a subset to a DestinationRule (a new cluster, the previous extra subset removed) and add an
endpoint (a WorkloadEntry joining a Service), as ``bench/push_scale.py`` does on simulated
proxies. After each, read ``proxystatus``. A proxy has converged when every type sent after
the apply is ACKed (RDS, CDS or EDS respectively among them); its
latency is its last ``acked_at`` minus the time the apply request was sent. The figure is the
slowest proxy's latency (all proxies ACKed); the table shows the median and the maximum over
repetitions. With pinning (the default on 2+ CPUs) the control plane runs on the first CPU and
the proxies, clients and this script on the others. The latency includes the control plane's
debounce quiet period (100 ms). No exit code depends on timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script (``python bench/push_latency.py``): the helpers live next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    Api,
    ControlPlane,
    Fleet,
    Processes,
    Sidecar,
    all_synced,
    cpu_split,
    free_loopback_ip,
    free_port,
    iso_to_epoch,
    machine,
    median,
    ratio,
    service_items,
    start_bare_envoy,
    start_control_plane,
    start_sidecar,
    table,
    wait_until,
    weighted_route,
)

from pilotfish.testing.ads_client import AdsClient

#: Targets from the issue: all proxies ACKed within this many seconds (100 real Envoys:
#: 0.5 s; fewer Envoys are shown without a target).
ENVOY_TARGET_S = 0.5
ENVOY_TARGET_SIZE = 100
SIMULATED_TARGET_S = 2.0
ROUTE_HOST = "svc-0"


@dataclass
class Sample:
    """One push: latencies (seconds after the apply request was sent)."""

    all_acked: float  # the slowest proxy's last ACK
    median_proxy: float  # the median proxy's last ACK
    apply_call: float  # the apply request itself (validation + store commit)
    client_received: float | None = None  # simulated: last response received by a client


@dataclass
class Row:
    label: str
    proxies: int
    services: int
    target: float | None
    samples: list[Sample] = field(default_factory=list)


def push_once(
    api: Api,
    v1_weight: int,
    count: int,
    timeout: float,
    items: list[dict[str, Any]] | None = None,
    must: str = "RDS",
) -> tuple[Sample, float]:
    """Apply a weight change (or ``items``) and wait until ``count`` proxies ACKed it, the
    ``must`` type among what they were sent; (sample, t0 monotonic)."""
    t0_mono, t0 = time.monotonic(), time.time()
    api.apply(items if items is not None else [weighted_route(ROUTE_HOST, v1_weight)])
    apply_call = time.time() - t0
    deadline = time.monotonic() + timeout
    while True:
        statuses = api.proxy_status()
        latencies = [converged_at(s, t0, must) for s in statuses]
        done = [x for x in latencies if x is not None]
        if len(statuses) >= count and len(done) == len(statuses) and all_synced(statuses, count):
            slowest = max(done) - t0
            return Sample(slowest, median(done) - t0, apply_call), t0_mono
        if time.monotonic() > deadline:
            raise SystemExit(
                f"{len(done)}/{count} proxies ACKed the weight change after {timeout:.0f}s"
            )
        time.sleep(0.02)


def converged_at(status: dict[str, Any], t0: float, must: str = "RDS") -> float | None:
    """When this proxy ACKed everything sent to it after ``t0`` (``must`` among it; ``RDS``
    is met by VHDS too: a sidecar on VHDS gets a VirtualService change as the virtual host
    it changed)."""
    types = status["types"]

    def sent_since(t: str) -> bool:
        needed = types.get(t) or {}
        sent = iso_to_epoch(needed.get("sent_at"))
        return sent is not None and sent >= t0 and needed.get("state") == "SYNCED"

    if not any(sent_since(t) for t in ((must, "VHDS") if must == "RDS" else (must,))):
        return None
    acks = []
    for t in types.values():
        sent_at = iso_to_epoch(t.get("sent_at"))
        if sent_at is None or sent_at < t0:
            continue
        acked_at = iso_to_epoch(t.get("acked_at"))
        if t.get("state") != "SYNCED" or acked_at is None:
            return None
        acks.append(acked_at)
    return max(acks)


# ------------------------------------------------------------------------------- real Envoys

#: The changes timed on real Envoys, as ``bench/push_scale.py`` times them on simulated ones.
CHANGES = ("VS weight", "DR subset", "endpoint")


def workload_entry(name: str, app: str, i: int) -> dict[str, Any]:
    """A WorkloadEntry joining the Service that selects ``app`` (an endpoint added)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"address": f"10.99.{i // 256 % 256}.{i % 256}", "labels": {"app": app}},
    }


def bench_envoys(
    procs: Processes,
    sizes: list[int],
    services: int,
    reps: int,
    cpus: tuple[set[int] | None, set[int] | None],
    bare: bool = False,
) -> list[Row]:
    cp = start_control_plane(procs, "server-envoys", cpus=cpus[0])
    api = cp.api()
    api.apply([*service_items(services), weighted_route(ROUTE_HOST, 50)])
    sidecars: list[Sidecar] = []
    rows = []
    weight = 50
    for size in sizes:
        new = [add_envoy(procs, cp, i, services, cpus[1], bare) for i in range(len(sidecars), size)]
        sidecars += new
        t = time.monotonic()
        for sc in new:
            wait_until(sc.ready, 120, f"sidecar {sc.name} ready")
        wait_until(
            lambda n=size: all_synced(api.proxy_status(), n),  # type: ignore[misc]
            120,
            f"{size} proxies synced",
        )
        print(f"  {size} Envoys ready and synced ({time.monotonic() - t:.1f}s)", flush=True)
        kind = "bare Envoy" if bare else "real Envoy"
        target = ENVOY_TARGET_S if size >= ENVOY_TARGET_SIZE else None
        by_change = {
            change: Row(f"{kind} x{size}: {change}", size, services, target) for change in CHANGES
        }
        for rep in range(reps):
            weight = 90 if weight != 90 else 10
            sample, _ = push_once(api, weight, size, timeout=60)
            by_change["VS weight"].samples.append(sample)
            if services < 2:
                continue
            target_svc = 1 + rep % (services - 1)
            # A new subset each time (the previous one goes): a new cluster for every proxy.
            subsets = ["v1", "v2", f"s{size}-{rep}"]
            dr = service_items(services, subsets=subsets)[2 * target_svc + 1]
            sample, _ = push_once(api, weight, size, 60, items=[dr], must="CDS")
            by_change["DR subset"].samples.append(sample)
            entry = workload_entry(f"extra-{size}-{rep}", f"svc-{target_svc}", rep + size * reps)
            sample, _ = push_once(api, weight, size, 60, items=[entry], must="EDS")
            by_change["endpoint"].samples.append(sample)
        for row in by_change.values():
            if row.samples:
                progress(row)
                rows.append(row)
    for sc in sidecars:
        procs.stop(sc.proc)
    procs.stop(cp.proc)
    return rows


def add_envoy(
    procs: Processes,
    cp: ControlPlane,
    i: int,
    services: int,
    cpus: set[int] | None,
    bare: bool = False,
) -> Sidecar:
    labels = {"app": f"svc-{i % services}", "version": "v1" if i % 2 == 0 else "v2"}
    ip = free_loopback_ip(9080)
    if bare:
        return start_bare_envoy(
            procs, cp, f"envoy-{i}", labels, ip=ip, inbound=(9080, free_port()), cpus=cpus
        )
    return start_sidecar(
        procs, cp, f"envoy-{i}", labels, ip=ip, inbound=(9080, free_port()), cpus=cpus
    )


# ------------------------------------------------------------------------------- simulated


def bench_simulated(
    procs: Processes,
    count: int,
    services: int,
    reps: int,
    cpus: tuple[set[int] | None, set[int] | None],
) -> tuple[Row, float]:
    cp = start_control_plane(procs, "server-simulated", cpus=cpus[0])
    api = cp.api()
    api.apply([*service_items(services), weighted_route(ROUTE_HOST, 50)])
    with Fleet(cp, services) as fleet:
        t = time.monotonic()
        fleet.grow(count, lambda n: all_synced(api.proxy_status(), n))
        sync_s = time.monotonic() - t
        print(f"  {count} simulated proxies synced ({sync_s:.1f}s)", flush=True)
        row = Row(f"simulated x{count}", count, services, SIMULATED_TARGET_S)
        weight = 50
        for _ in range(reps):
            weight = 90 if weight != 90 else 10
            sample, t0_mono = push_once(api, weight, count, timeout=300)
            sample.client_received = last_received(fleet.clients, t0_mono)
            row.samples.append(sample)
        progress(row)
    procs.stop(cp.proc)
    return row, sync_s


def last_received(clients: list[AdsClient], t0_mono: float) -> float | None:
    times = [r.at for c in clients for r in list(c.received) if r.at >= t0_mono]
    return max(times) - t0_mono if times else None


# ------------------------------------------------------------------------------- report


def progress(row: Row) -> None:
    slowest = [s.all_acked for s in row.samples]
    print(
        f"  {row.label}: all ACKed median {ms(median(slowest))} ms, max {ms(max(slowest))} ms",
        flush=True,
    )


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def report(rows: list[Row]) -> str:
    headers = [
        "proxies",
        "services",
        "reps",
        "all ACKed median ms",
        "all ACKed max ms",
        "median proxy ms",
        "apply call ms",
        "target ms",
        "median/target",
        "max/target",
    ]
    lines = []
    for r in rows:
        slowest = [s.all_acked for s in r.samples]
        target = r.target
        lines.append(
            [
                r.label,
                r.services,
                len(r.samples),
                ms(median(slowest)),
                ms(max(slowest)),
                ms(median([s.median_proxy for s in r.samples])),
                ms(median([s.apply_call for s in r.samples])),
                ms(target),
                ratio(median(slowest), target) if target else "-",
                ratio(max(slowest), target) if target else "-",
            ]
        )
    return table(headers, lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envoys", default="1,10,50,100", help="Sizes of the real-Envoy part.")
    parser.add_argument(
        "--bare-envoys",
        action="store_true",
        help="Run Envoy alone with the agent's bootstrap (no agent process per Envoy).",
    )
    parser.add_argument("--envoy-services", type=int, default=10)
    parser.add_argument("--simulated", type=int, default=500, help="Simulated proxies (0: skip).")
    parser.add_argument("--simulated-services", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="Tiny sizes, one repetition.")
    parser.add_argument("--no-pin", action="store_true", help="Do not pin processes to CPUs.")
    parser.add_argument("--workdir", type=Path, help="Keep logs here (default: a temp dir).")
    args = parser.parse_args(argv)
    if args.quick:
        args.envoys, args.envoy_services, args.reps = "1", 2, 1
        args.simulated, args.simulated_services = 2, 3
    sizes = sorted({int(x) for x in args.envoys.split(",") if x.strip() and int(x) > 0})
    server_cpus, load_cpus = cpu_split(not args.no_pin)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)  # before any thread starts: they inherit it
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pilotfish-bench-push-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"push latency on {machine()}; work dir {workdir}", flush=True)
    print(
        f"control plane on CPUs {sorted(server_cpus)}, proxies and clients on {sorted(load_cpus)}"
        if server_cpus and load_cpus
        else "processes not pinned",
        flush=True,
    )
    rows: list[Row] = []
    extra = []
    with Processes(workdir) as procs:
        if sizes:
            rows += bench_envoys(
                procs,
                sizes,
                args.envoy_services,
                args.reps,
                (server_cpus, load_cpus),
                bare=args.bare_envoys,
            )
        if args.simulated > 0:
            row, sync_s = bench_simulated(
                procs, args.simulated, args.simulated_services, args.reps, (server_cpus, load_cpus)
            )
            rows.append(row)
            received = [s.client_received for s in row.samples if s.client_received is not None]
            extra.append(
                f"simulated: initial connect + sync of {row.proxies} proxies with "
                f"{row.services} services took {sync_s:.1f}s; last response received by a "
                f"client (median over reps) {ms(median(received) if received else None)} ms "
                "after the apply"
            )
    print()
    print(report(rows))
    for line in extra:
        print(line)
    print(
        "all ACKed: slowest proxy's last ACK (proxystatus acked_at) after the apply request "
        "was sent; ratios below 1.00x meet the target."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
