"""The control plane at scale: a connection storm of simulated proxies, then changes of each
kind, from the apply until every proxy ACKed; memory per connected proxy.

Run from the repository root::

    .venv/bin/python bench/push_scale.py                         # 1,000 proxies x 1,000 services
    .venv/bin/python bench/push_scale.py --proxies 200 --services 200 --reps 5
    .venv/bin/python bench/push_scale.py --quick                 # 20 x 20, 2 reps
    .venv/bin/python bench/push_scale.py --reps 0                # the storms and memory only
    .venv/bin/python bench/push_scale.py --rds                   # everything with whole RDS
    .venv/bin/python bench/push_scale.py --memory-report /tmp/mem    # where its memory is

One control plane (``pilotfish server``, SQLite store, xDS over TLS) pinned to the first CPU;
the simulated proxies (``pilotfish.testing.ads_client.AdsClient``, Delta, ACKing like Envoy,
each an endpoint of one of the Services) run in a separate worker process pinned to the other
CPU, with this script. ``--services`` Services with DestinationRules (subsets v1 and v2) and a
VirtualService are applied first. Then:

- **connection storm**: every proxy connects at once (as after a control-plane restart); the
  figure is the time until each one has received and ACKed clusters, endpoints, listeners
  and routes; then until each one holds the endpoint of every proxy (the pushes the
  connections asked for have reached everyone), and the control plane's CPU seconds over
  both. Meanwhile this script reads the HTTP API (list VirtualServices) every 50 ms: the
  API's p99 latency during the storm;
- **memory**: the server's RSS growth over the 0-proxy baseline, per connected proxy, once
  it settled (idle, and one heap trim interval later: what the storm freed goes back to the
  system then); the RSS 2 s after the storm is printed beside it. Its RSS is also printed
  after the changes, after the switch below and after its flips (each once settled too).
  ``--memory-report DIR`` has the control plane write what holds it at those points
  (``pilotfish.memreport``);
- **restart storm** (the issue's connection storm): the control plane is killed (SIGKILL)
  and started again on the same store and ports; every simulated proxy reconnects as Envoy
  does (jittered exponential backoff from 0.5 s; over Delta it declares the resources it
  holds, ``initial_resource_versions``). The figures: from the kill and from the restarted
  server answering its API until each proxy has ACKed every type on its new stream, then
  until each holds every proxy's endpoint again; the resources the server sent again; its
  CPU from its start; the API's p99 meanwhile (read from when it answers). Twice: first
  with the simulated sidecars as they connected (captured sidecars without a Pod object,
  whose endpoints exist only through their connection, so the first to resume lack those
  still to come), then, once the Pod objects the local runtime records for its pods are
  applied (labels, injection annotation, address, Ready), as in a user's mesh, where the
  endpoints are in the store and survive the restart. The target rows are the second;
- **changes** (``--reps`` of each kind): a VirtualService weight flip (by default over VHDS:
  the one virtual host it changed; with ``--rds``, the sidecars' whole route
  configuration), a subset added to a DestinationRule (CDS and the new cluster's EDS), an
  endpoint added (a WorkloadEntry joins a Service: EDS). For each, the time from sending the
  apply until the last proxy received (and ACKed right after) the response carrying the
  change; median and p99 over the repetitions of the slowest proxy;
- **the weight flips the other way** (unless ``--no-switch``): the mesh config turns
  ``virtualHostDiscovery`` off (on with ``--rds``), timed until every proxy holds its routes
  in the other form, then the same weight flips again, now sending each proxy its whole
  route configuration (the one virtual host with ``--rds``); the ratio of the two medians,
  measured side by side in one run.

The proxies count as synced (storms) once they ACKed clusters, endpoints, listeners, route
configurations and, when their route configurations carry ``vhds``, virtual hosts.

Clock: ``time.monotonic`` (CLOCK_MONOTONIC, shared by both processes). Figures include the
control plane's debounce quiet period (100 ms). No exit code depends on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as a script (``python bench/push_scale.py``): the helpers live next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    ControlPlane,
    Processes,
    cpu_seconds,
    cpu_split,
    machine,
    ratio,
    rss_mb,
    service_items,
    simulated_node,
    start_control_plane,
    table,
    weighted_route,
)

from pilotfish.heap import TRIM_INTERVAL_S

CHANGE_TARGETS = (1.0, 1.5)  # median, p99 seconds
SYNC_TARGET_S = 30.0
MB_PER_PROXY_TARGET = 0.5
API_P99_TARGET_S = 0.1
ROUTE_HOST = "svc-0"
PODS_PATH = "/api/v1/namespaces/default/pods"
HOST = "{}.default.svc.cluster.local"
#: The VHDS resource of ROUTE_HOST's virtual host (route config "9080").
ROUTE_VHOST = f"9080/{HOST.format(ROUTE_HOST)}:9080"
#: Read by the control plane (``pilotfish.memreport``): where SIGUSR2 writes a report.
MEMORY_REPORT_ENV = "PILOTFISH_MEMORY_REPORT"
#: Environment variables set for the control plane and not for the simulated proxies.
SERVER_ONLY_ENV: set[str] = set()


def vhds_switch(on: bool) -> dict[str, Any]:
    """The mesh config with ``virtualHostDiscovery`` on or off."""
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "vhds", "namespace": "istio-system"},
        "spec": {"meshConfig": {"virtualHostDiscovery": on}},
    }


# ------------------------------------------------------------------------------- worker


async def _worker(target: str, roots: str | None, count: int, services: int) -> None:
    import grpc

    from pilotfish.testing.ads_client import AdsClient, Shared
    from pilotfish.xds.resources import (
        CLUSTER_TYPE,
        ENDPOINT_TYPE,
        LISTENER_TYPE,
        ROUTE_TYPE,
        VIRTUAL_HOST_TYPE,
    )

    credentials = (
        grpc.ssl_channel_credentials(root_certificates=Path(roots).read_bytes()) if roots else None
    )
    shared: Shared = {}
    clients = [
        AdsClient(
            target,
            simulated_node(i, services),
            delta=True,
            credentials=credentials,
            shared=shared,
            reconnect=True,
        )
        for i in range(count)
    ]
    loop = asyncio.get_running_loop()

    def say(**msg: Any) -> None:
        print(json.dumps(msg), flush=True)

    def synced(c: AdsClient) -> bool:
        if not c.routes or not all(
            c.acked_version(t) for t in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)
        ):
            return False
        # Over VHDS the routes are the virtual hosts too.
        vhds = any(r.HasField("vhds") for r in c.routes.values())
        return not vhds or bool(c.acked_version(VIRTUAL_HOST_TYPE))

    started = time.monotonic()
    await asyncio.gather(*(c.start() for c in clients))
    pending = list(clients)
    while True:
        # Only those not synced yet are looked at again (this process's CPU is the
        # simulated proxies' and must stay theirs).
        pending = [c for c in pending if not synced(c)]
        if not pending:
            break
        errors = [c.error for c in pending if c.error is not None]
        if errors:
            say(event="error", error=repr(errors[0]), failed=len(errors))
            return
        await asyncio.sleep(0.05)
    synced_at = time.monotonic()
    # Then until every proxy holds every proxy's endpoint (each is an endpoint of one
    # Service): the pushes that the connections asked for have reached everyone.
    names = [f"outbound|9080||{HOST.format(f'svc-{i}')}" for i in range(services)]
    counts: dict[int, int] = {}

    def endpoints_held(c: AdsClient) -> int:
        total = 0
        for name in names:
            cla = c.endpoints.get(name)
            if cla is None:
                continue
            n = counts.get(id(cla))
            if n is None:
                n = counts[id(cla)] = sum(len(lb.lb_endpoints) for lb in cla.endpoints)
            total += n
        return total

    async def all_hold_every_endpoint(since: float) -> bool:
        while not all(endpoints_held(c) >= count for c in clients):
            if time.monotonic() - since > 600:
                say(event="error", error="endpoints did not converge within 600 s", failed=0)
                return False
            await asyncio.sleep(0.25)
        return True

    if not await all_hold_every_endpoint(synced_at):
        return
    say(event="synced", started=started, at=synced_at, converged=time.monotonic())
    streams = [c.streams for c in clients]

    def resynced(i: int, c: AdsClient) -> bool:
        return c.streams > streams[i] and synced(c)

    async def resync(since: float) -> None:
        """After the control plane was killed at ``since``: until every proxy is synced on a
        new stream, then holds every endpoint; what was sent again meanwhile."""
        while not all(resynced(i, c) for i, c in enumerate(clients)):
            if time.monotonic() - since > 600:
                left = sum(1 for i, c in enumerate(clients) if not resynced(i, c))
                say(event="error", error=f"{left} proxies not resynced in 600 s", failed=left)
                return
            await asyncio.sleep(0.05)
        at = time.monotonic()
        if not await all_hold_every_endpoint(at):
            return
        converged = time.monotonic()
        after = [r for c in clients for r in c.received if r.at >= since]
        by_type: dict[str, int] = {}
        for r in after:
            key = r.type_url.rsplit(".", 1)[-1]
            by_type[key] = by_type.get(key, 0) + len(r.names)
        say(
            event="resynced",
            at=at,
            converged=converged,
            responses=len(after),
            resources=by_type,
            removed=sum(len(r.removed) for r in after),
            streams=sum(c.streams - streams[i] for i, c in enumerate(clients)),
        )

    def arrival(c: AdsClient, type_url: str, name: str, since: float) -> float | None:
        for r in reversed(c.received):
            if r.at < since:
                return None
            if r.type_url == type_url and name in r.names:
                # The first arrival after ``since``: keep looking backwards for an earlier one.
                earlier = [
                    x.at
                    for x in c.received
                    if x.at >= since and x.type_url == type_url and name in x.names
                ]
                return min(earlier)
        return None

    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        cmd = json.loads(line)
        if cmd["cmd"] == "stop":
            break
        if cmd["cmd"] == "resync":
            await resync(cmd["since"])
            continue
        type_url = {
            "RDS": ROUTE_TYPE,
            "EDS": ENDPOINT_TYPE,
            "CDS": CLUSTER_TYPE,
            "VHDS": VIRTUAL_HOST_TYPE,
        }[cmd["type"]]
        deadline = time.monotonic() + cmd["timeout"]
        while True:
            times = [arrival(c, type_url, cmd["name"], cmd["since"]) for c in clients]
            got = [t for t in times if t is not None]
            if len(got) == count or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        say(event="arrived", times=got, missing=count - len(got))
    await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


# ------------------------------------------------------------------------------- orchestrator


class Worker:
    def __init__(self, args: list[str], cpus: set[int] | None, log: Path) -> None:
        # Only the control plane gets --server-env and traces its allocations (--tracemalloc).
        env = {k: v for k, v in os.environ.items() if k not in SERVER_ONLY_ENV}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
        )
        if cpus:
            os.sched_setaffinity(self.proc.pid, cpus)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the simulated proxies' process exited; see its log")
        msg: dict[str, Any] = json.loads(line)
        if msg.get("event") == "error":
            raise SystemExit(f"simulated proxies failed: {msg}")
        return msg

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        try:
            self.send(cmd="stop")
            self.proc.wait(60)
        except Exception:
            self.proc.kill()
            self.proc.wait()


class ApiProbe:
    """Reads the API every ``interval`` seconds in a thread; keeps each call's latency."""

    def __init__(self, api: Any, interval: float = 0.05) -> None:
        self.api = api
        self.interval = interval
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        path = "/apis/networking.istio.io/v1/namespaces/default/virtualservices"
        while not self._stop.is_set():
            t = time.monotonic()
            self.api.http.get(path).raise_for_status()
            self.latencies.append(time.monotonic() - t)
            self._stop.wait(self.interval)

    def __enter__(self) -> ApiProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def dr_with_subsets(i: int, subsets: list[str]) -> dict[str, Any]:
    name = f"svc-{i}"
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "host": name,
            "subsets": [{"name": s, "labels": {"version": s}} for s in subsets],
        },
    }


def workload_entry(i: int, service: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {"name": f"extra-{i}", "namespace": "default"},
        "spec": {
            "address": f"10.99.{i // 256}.{i % 256}",
            "labels": {"app": f"svc-{service}", "version": "v1"},
        },
    }


def sim_pod(i: int, services: int) -> dict[str, Any]:
    """The Pod object of simulated sidecar ``i`` as the local runtime records a running pod
    with an injected sidecar (``platform/local``): its labels, the injection annotation, its
    address and the Ready condition. A sidecar of a Pod is an endpoint through its Pod, so
    its endpoint outlives a control-plane restart (see "The restart storm" in
    docs/benchmarks.md)."""
    node = simulated_node(i, services)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": node.pod_name,
            "namespace": node.namespace,
            "labels": dict(node.labels),
            "annotations": {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'},
        },
        "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]},
        "status": {
            "phase": "Running",
            "podIP": node.ip,
            "podIPs": [{"ip": node.ip}],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def wait_idle(pid: int, timeout: float = 120.0) -> None:
    """Until the process used under 5% of a CPU over each of two seconds in a row."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2 and time.monotonic() < deadline:
        before = cpu_seconds(pid)
        time.sleep(1.0)
        quiet = quiet + 1 if cpu_seconds(pid) - before < 0.05 else 0


def request_memory_report(pid: int, directory: Path, timeout: float = 300.0) -> Path:
    """Ask the control plane for a memory report (SIGUSR2) and wait until it is written."""
    before = set(directory.glob(f"memory-{pid}-*.txt"))
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = set(directory.glob(f"memory-{pid}-*.txt")) - before
        if new:
            return new.pop()
        time.sleep(0.2)
    raise SystemExit(f"no memory report from {pid} in {timeout:.0f} s")


def settle(pid: int) -> None:
    """Until the control plane is idle (its writes completed), then one heap trim interval."""
    wait_idle(pid)
    time.sleep(TRIM_INTERVAL_S + 1.0)


def settled_rss(pid: int) -> tuple[float, float]:
    """The control plane's RSS 2 s after a storm, and once it settled: idle, then one heap
    trim interval later (``pilotfish.heap``: what the storm freed goes back to the system
    within one interval of the control plane going quiet)."""
    time.sleep(2.0)
    early = rss_mb(pid)
    wait_idle(pid)
    time.sleep(TRIM_INTERVAL_S + 1.0)
    return early, rss_mb(pid)


def run_change(
    api: Any, worker: Worker, items: list[dict[str, Any]], type_: str, name: str, count: int
) -> float:
    """Apply ``items``; seconds until every proxy received ``type_`` ``name`` (the slowest)."""
    t0 = time.monotonic()
    api.apply(items)
    worker.send(cmd="wait", type=type_, name=name, since=t0, timeout=120)
    msg = worker.read()
    if msg["missing"]:
        raise SystemExit(f"{msg['missing']}/{count} proxies did not receive {type_} {name}")
    return float(max(msg["times"]) - t0)


def restart_storm(
    procs: Processes,
    cp: ControlPlane,
    worker: Worker,
    cpus: set[int] | None,
    extra_args: tuple[str, ...] = (),
) -> tuple[ControlPlane, Any, dict[str, Any]]:
    """Kill the control plane, start it again on the same store and ports, and wait until
    every proxy resynced; the restarted control plane, its API and the figures."""
    api_port = int(cp.url.rsplit(":", 1)[1])
    killed = time.monotonic()
    os.killpg(cp.proc.pid, signal.SIGKILL)  # its API worker too, as a crash would
    cp.proc.wait()
    cp = start_control_plane(
        procs, "server", cpus=cpus, extra_args=extra_args, ports=(api_port, cp.xds_port)
    )
    ready = time.monotonic()
    api = cp.api()
    worker.send(cmd="resync", since=killed)
    with ApiProbe(api) as probe:
        msg = worker.read()
    cpu = cpu_seconds(cp.pid)
    early_rss, rss = settled_rss(cp.pid)
    figures = {
        "rss": rss,
        "early_rss": early_rss,
        "killed": killed,
        "ready": ready,
        "synced": msg["at"],
        "converged": msg["converged"],
        "cpu": cpu,
        "api_p99": percentile(probe.latencies, 99),
        "api_calls": len(probe.latencies),
        "responses": msg["responses"],
        "resources": msg["resources"],
        "removed": msg["removed"],
        "streams": msg["streams"],
    }
    print(
        f"  restart: server ready {ready - killed:.1f}s after the kill; every proxy resynced "
        f"{msg['at'] - killed:.1f}s after it, holding every endpoint after "
        f"{msg['converged'] - killed:.1f}s; resent {msg['resources']} in {msg['responses']} "
        f"responses ({msg['streams']} streams opened)",
        flush=True,
    )
    return cp, api, figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", type=int, default=1000)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=10, help="0: the storm and memory only.")
    parser.add_argument("--quick", action="store_true", help="20 proxies, 20 services, 2 reps.")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument(
        "--rds",
        action="store_true",
        help="virtualHostDiscovery off from the start (whole route configurations over RDS); "
        "the side-by-side flips then turn it on",
    )
    parser.add_argument(
        "--no-switch",
        action="store_true",
        help="Skip the weight flips with virtualHostDiscovery switched the other way.",
    )
    parser.add_argument(
        "--no-api-worker",
        action="store_true",
        help="serve the HTTP API in the control plane's process (as before the API worker)",
    )
    parser.add_argument(
        "--no-restart", action="store_true", help="skip the restart storm (fresh connects only)"
    )
    parser.add_argument(
        "--memory-report",
        type=Path,
        metavar="DIR",
        help="the control plane writes a memory report (pilotfish.memreport) into DIR after "
        "the fresh storm, each restart storm, the changes and the flips after the switch; "
        "each report trims its heap (malloc_trim), so the RSS figures after the first are "
        "not comparable with a run without",
    )
    parser.add_argument(
        "--memory-report-last",
        action="store_true",
        help="with --memory-report: only the last report (no trim before any RSS figure)",
    )
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="with --memory-report: the control plane traces its allocations "
        "(PYTHONTRACEMALLOC=FRAMES; slower), and its reports list the largest sites",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for the control plane only (e.g. MALLOC_ARENA_MAX=2); "
        "repeatable",
    )
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--worker", nargs=4, metavar=("TARGET", "ROOTS", "COUNT", "SERVICES"))
    args = parser.parse_args(argv)
    if args.worker:
        target, roots, count, services = args.worker
        asyncio.run(_worker(target, roots or None, int(count), int(services)))
        return 0
    if args.quick:
        args.proxies, args.services, args.reps = 20, 20, 2
    server_cpus, load_cpus = cpu_split(not args.no_pin)
    if load_cpus:
        os.sched_setaffinity(0, load_cpus)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pilotfish-bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    n, s = args.proxies, args.services
    routes = "whole route configurations (RDS)" if args.rds else "virtual hosts over VHDS"
    print(
        f"push scale on {machine()}: {n} proxies x {s} services, {routes}; work dir {workdir}",
        flush=True,
    )
    for setting in args.server_env:
        name, _, value = setting.partition("=")
        os.environ[name] = value
        SERVER_ONLY_ENV.add(name)
    if args.memory_report:
        os.environ[MEMORY_REPORT_ENV] = str(args.memory_report.resolve())
        if args.tracemalloc:
            os.environ["PYTHONTRACEMALLOC"] = str(args.tracemalloc)
            SERVER_ONLY_ENV.add("PYTHONTRACEMALLOC")
    reports: list[tuple[str, Path]] = []

    def memory_report(pid: int, label: str, last: bool = False) -> None:
        if args.memory_report and (last or not args.memory_report_last):
            reports.append((label, request_memory_report(pid, args.memory_report)))

    with Processes(workdir) as procs:
        extra = ("--no-api-worker",) if args.no_api_worker else ()
        cp = start_control_plane(procs, "server", cpus=server_cpus, extra_args=extra)
        api = cp.api()
        # The mode named, whatever the mesh's default: VHDS, or whole RDS with --rds.
        items = [*service_items(s), weighted_route(ROUTE_HOST, 50), vhds_switch(not args.rds)]
        for i in range(0, len(items), 500):
            api.apply(items[i : i + 500])
        time.sleep(1.0)
        baseline = rss_mb(cp.pid)
        worker = Worker(
            [f"127.0.0.1:{cp.xds_port}", str(cp.roots), str(n), str(s)],
            load_cpus,
            workdir / "proxies.log",
        )
        try:
            cpu_before = cpu_seconds(cp.pid)
            with ApiProbe(api) as probe:
                msg = worker.read()
            storm_cpu = cpu_seconds(cp.pid) - cpu_before
            sync_s = msg["at"] - msg["started"]
            converged_s = msg["converged"] - msg["started"]
            print(
                f"  {n} proxies connected and synced in {sync_s:.1f}s, each holding every "
                f"proxy's endpoint after {converged_s:.1f}s",
                flush=True,
            )
            early_rss, rss = settled_rss(cp.pid)
            per_proxy = (rss - baseline) / n
            memory_report(cp.pid, "synced")
            # The restart storm in two settings, one after the other: the simulated sidecars
            # as they connected (captured sidecars without a Pod object: their endpoints
            # exist only through their connection and are gone after a restart), then with
            # the Pod objects the local runtime records for its pods (a user's mesh: the
            # endpoints are in the store and survive the restart).
            restarts: dict[str, dict[str, Any]] = {}
            if not args.no_restart:
                print("  restart storm, sidecars without Pod objects:", flush=True)
                cp, api, restarts["without Pods"] = restart_storm(
                    procs, cp, worker, server_cpus, extra
                )
                memory_report(cp.pid, "after the restart storm without Pods")
                # Created one by one as the runtime does (apply refuses Pods).
                for i in range(n):
                    api.http.post(PODS_PATH, json=sim_pod(i, s)).raise_for_status()
                wait_idle(cp.pid)
                print("  restart storm, sidecars of Pods (as the runtime records them):")
                cp, api, restarts["Pods"] = restart_storm(procs, cp, worker, server_cpus, extra)
                memory_report(cp.pid, "after the restart storm with Pods")
            # Where a weight flip shows: the one virtual host (VHDS) or the route config (RDS).
            modes = {"VHDS": ("VHDS", ROUTE_VHOST), "RDS": ("RDS", "9080")}
            mode, other = ("RDS", "VHDS") if args.rds else ("VHDS", "RDS")
            flip = f"VS weight over {mode}"
            results: dict[str, list[float]] = {flip: [], "DR subset": [], "endpoint": []}
            for rep in range(args.reps):
                weight = 90 if rep % 2 == 0 else 10
                results[flip].append(
                    run_change(api, worker, [weighted_route(ROUTE_HOST, weight)], *modes[mode], n)
                )
                target = 1 + rep % (s - 1)
                cluster = f"outbound|9080|v3|{HOST.format(f'svc-{target}')}"
                subset = dr_with_subsets(target, ["v1", "v2", "v3"])
                results["DR subset"].append(run_change(api, worker, [subset], "EDS", cluster, n))
                cluster = f"outbound|9080||{HOST.format(f'svc-{target}')}"
                results["endpoint"].append(
                    run_change(api, worker, [workload_entry(rep, target)], "EDS", cluster, n)
                )
                print(
                    f"  rep {rep + 1}: "
                    + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in results.items()),
                    flush=True,
                )
            settle(cp.pid)  # what it keeps, not what is in flight or about to be trimmed
            rss_changes = rss_mb(cp.pid)
            if args.reps:
                memory_report(cp.pid, f"after {args.reps * 3} changes")
            switch_s = None
            rss_switch = 0.0
            other_flip = f"VS weight over {other}"
            if args.reps and not args.no_switch:
                # Side by side: the same weight flips with virtualHostDiscovery switched the
                # other way (the switch itself sends every proxy its route configs in the
                # other form: whole, or with vhds and then every virtual host).
                switch = vhds_switch(other == "VHDS")
                switch_s = run_change(api, worker, [switch], *modes[other], n)
                print(f"  {other}: every proxy holds its routes so after {switch_s:.1f}s")
                settle(cp.pid)  # what it keeps, not what is in flight or about to be trimmed
                rss_switch = rss_mb(cp.pid)
                memory_report(cp.pid, f"after the switch to {other}")
                results[other_flip] = []
                for rep in range(args.reps):
                    # Weights the flips above never set: each apply is a change.
                    weight = 80 if rep % 2 == 0 else 20
                    results[other_flip].append(
                        run_change(
                            api, worker, [weighted_route(ROUTE_HOST, weight)], *modes[other], n
                        )
                    )
                    print(
                        f"  rep {rep + 1}: {other_flip} {results[other_flip][-1] * 1000:.0f} ms",
                        flush=True,
                    )
            settle(cp.pid)  # what it keeps, not what is in flight or about to be trimmed
            rss_after = rss_mb(cp.pid)
            memory_report(cp.pid, "at the end", last=True)
        finally:
            worker.stop()
    api_p99 = percentile(probe.latencies, 99)
    rows: list[list[object]] = []
    for kind, values in results.items():
        if not values:  # --reps 0: the storm and memory only
            continue
        med, p99 = statistics.median(values), percentile(values, 99)
        rows.append(
            [
                f"apply -> all ACKed: {kind} (median)",
                f"{med * 1000:.0f} ms",
                f"{CHANGE_TARGETS[0] * 1000:.0f} ms",
                ratio(med, CHANGE_TARGETS[0]),
            ]
        )
        rows.append(
            [
                f"apply -> all ACKed: {kind} (p99)",
                f"{p99 * 1000:.0f} ms",
                f"{CHANGE_TARGETS[1] * 1000:.0f} ms",
                ratio(p99, CHANGE_TARGETS[1]),
            ]
        )
    plain, vhds = results.get("VS weight over RDS"), results.get("VS weight over VHDS")
    if plain and vhds:
        rows.append(
            [
                "VS weight: over VHDS / whole route config (median)",
                f"{statistics.median(vhds) / statistics.median(plain):.2f}x",
                "",
                "",
            ]
        )
    if switch_s is not None:
        rows.append(
            [
                f"virtualHostDiscovery switched {'on' if other == 'VHDS' else 'off'} -> all "
                "hold their routes so",
                f"{switch_s:.1f} s",
                "",
                "",
            ]
        )
    for setting, r in restarts.items():
        # The target rows: the restart storm of a user's mesh (sidecars of Pods); the
        # setting without Pod objects is measured and shown beside it.
        target = setting == "Pods"
        name = f"restart storm ({'sidecars of Pods' if target else 'sidecars without Pods'})"
        resent = sum(r["resources"].values())
        rows.append(
            [
                f"{name}: kill -9 -> all resynced",
                f"{r['synced'] - r['killed']:.1f} s",
                f"{SYNC_TARGET_S:.0f} s" if target else "",
                ratio(r["synced"] - r["killed"], SYNC_TARGET_S) if target else "",
            ]
        )
        rows.append(
            [f"{name}: server up -> all resynced", f"{r['synced'] - r['ready']:.1f} s", "", ""]
        )
        rows.append(
            [
                f"{name}: kill -> every proxy holds every endpoint",
                f"{r['converged'] - r['killed']:.1f} s",
                "",
                "",
            ]
        )
        rows.append([f"{name}: control-plane CPU (from its start)", f"{r['cpu']:.1f} s", "", ""])
        rows.append(
            [
                f"API p99 during the {name} ({r['api_calls']} calls)",
                f"{r['api_p99'] * 1000:.0f} ms",
                f"{API_P99_TARGET_S * 1000:.0f} ms",
                ratio(r["api_p99"], API_P99_TARGET_S),
            ]
        )
        per = (r["rss"] - baseline) / n
        rows.append(
            [
                f"control-plane memory per proxy, after the {name}",
                f"{per:.2f} MB",
                f"{MB_PER_PROXY_TARGET} MB",
                ratio(per, MB_PER_PROXY_TARGET),
            ]
        )
        detail = ", ".join(f"{k} {v}" for k, v in sorted(r["resources"].items()) if v)
        rows.append(
            [
                f"{name}: resources sent again",
                f"{resent} ({detail or 'none'}; {r['removed']} removed)",
                "",
                "",
            ]
        )
    rows.append(
        [
            "fresh connect + sync (storm)",
            f"{sync_s:.1f} s",
            f"{SYNC_TARGET_S:.0f} s",
            ratio(sync_s, SYNC_TARGET_S),
        ]
    )
    rows.append(
        [
            "fresh storm: every proxy holds every endpoint",
            f"{converged_s:.1f} s",
            "",
            "",
        ]
    )
    rows.append(["fresh storm: control-plane CPU", f"{storm_cpu:.1f} s", "", ""])
    rows.append(
        [
            f"API p99 during the fresh storm ({len(probe.latencies)} calls)",
            f"{api_p99 * 1000:.0f} ms",
            f"{API_P99_TARGET_S * 1000:.0f} ms",
            ratio(api_p99, API_P99_TARGET_S),
        ]
    )
    rows.append(
        [
            "control-plane memory per proxy",
            f"{per_proxy:.2f} MB",
            f"{MB_PER_PROXY_TARGET} MB",
            ratio(per_proxy, MB_PER_PROXY_TARGET),
        ]
    )
    print()
    print(table([f"{n} proxies x {s} services", "measured", "target", "ratio"], rows))
    print(
        f"server RSS (2 s after the storm -> settled): {baseline:.0f} MB with no proxy, "
        f"{early_rss:.0f} -> {rss:.0f} MB synced"
        + "".join(
            f", {r['early_rss']:.0f} -> {r['rss']:.0f} MB after the restart storm ({k})"
            for k, r in restarts.items()
        )
        + f", {rss_changes:.0f} MB after {args.reps * 3} changes"
        + (
            f", {rss_switch:.0f} MB after the switch to {other}, {rss_after:.0f} MB after its "
            f"{args.reps} flips"
            if switch_s is not None
            else ""
        )
        + "; ratios below 1.00x meet the target."
    )
    for label, path in reports:
        print(f"memory report {label}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
