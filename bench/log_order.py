"""Does Envoy write the response before or after it runs the access loggers? Measured from
outside, side by side in one run.

Run from the repository root::

    .venv/bin/python bench/log_order.py            # 3 rounds of 400 requests per config
    .venv/bin/python bench/log_order.py --quick    # 1 round of 100
    .venv/bin/python bench/log_order.py --strace   # also trace the proxy's socket calls

One backend Envoy answers every request itself (200, 2 bytes). In front of it one proxy Envoy
per config (the client sidecar's outbound shape of ``bench/stats_logger.py``: edge filter,
router, one cluster with Istio's endpoint and cluster metadata), ``--concurrency 1``. Configs:

- ``none``: no access logger;
- ``metrics``: Istio's four HTTP metrics as generated (the packed stats logger);
- ``heavy-metrics``: the same stats logger with ``--copies`` copies of the four metrics (each
  copy its own stat names): a logger made deliberately expensive;
- ``heavy-upstream``: the ``heavy-metrics`` logger as the router's ``upstream_log`` instead of
  the connection manager's access log (logged when the upstream request ends);
- ``heavy-file``: a file access logger to ``/dev/null`` whose line is Istio's text format
  ``--copies`` times over (formatted on the worker, as every file access log line is).

The client sends one keep-alive request at a time and then waits ``--gap`` ms, so every
Envoy is idle when the next request arrives: work Envoy did *after* writing the response would
not show in the client's latency, work done *before* it shows in full. For each config it
prints the client's median latency (send to full response) and the proxy's CPU time per
request (``/proc/PID/task/*/schedstat``, nanoseconds on CPU). If the loggers run before the
write, the latency grows by what the logger costs in CPU: ``latency over none`` ≈ ``CPU over
none``; if they ran after it, ``latency over none`` would stay near zero.

``--strace`` also runs the heavy configs under ``strace -ttt`` for a few requests and prints
the median time from the ``readv`` that brings the backend's response to the ``writev`` that
sends it downstream: between the two the worker makes no system call, and that gap is the
proxy's own work between reading the response and writing it, loggers included.

No exit code depends on the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Processes, cpu_split, free_port, median, table
from stats_logger import (
    _access_log,
    _json,
    backend_bootstrap,
    configs,
    proxy_bootstrap,
)

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.translate import telemetry as T

REQUEST = b"GET / HTTP/1.1\r\nHost: bench:9080\r\n\r\n"


def heavy_metrics(copies: int) -> dict[str, Any]:
    from envoy.extensions.access_loggers.stats.v3 import stats_pb2

    log = T.http_metrics_log(T.client_http_tags(), [])
    assert log is not None
    one = stats_pb2.Config()
    log.typed_config.Unpack(one)
    many = stats_pb2.Config(stat_prefix="istio")
    for i in range(copies):
        for counter in one.counters:
            c = many.counters.add()
            c.CopyFrom(counter)
            c.stat.name = f"{counter.stat.name}_{i}"
        for histogram in one.histograms:
            h = many.histograms.add()
            h.CopyFrom(histogram)
            h.stat.name = f"{histogram.stat.name}_{i}"
    log.typed_config.Pack(many)
    return _json(log)


def heavy_file(copies: int) -> dict[str, Any]:
    log = _access_log()
    source = log["typed_config"]["log_format"]["text_format_source"]
    line = source["inline_string"].rstrip("\n")
    source["inline_string"] = " ".join([line] * copies) + "\n"
    return log


def cpu_ns(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("proxy closed the connection")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    match = re.search(rb"content-length:\s*(\d+)", head, re.IGNORECASE)
    length = int(match.group(1)) if match else 0
    while len(body) < length:
        body += sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"proxy answered {head[:40]!r}")
    return head


def run_requests(port: int, count: int, gap: float) -> list[float]:
    """Latencies in microseconds of ``count`` requests on one connection, ``gap`` s apart."""
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter_ns()
            sock.sendall(REQUEST)
            _read_response(sock)
            out.append((time.perf_counter_ns() - start) / 1000)
            time.sleep(gap)
    return out


def wait_serving(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            run_requests(port, 1, 0)
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{name}: the proxy did not come up") from None
            time.sleep(0.2)


def strace_gap(port: int, pid: int, workdir: Path, name: str, count: int) -> float:
    """Median µs from the readv bringing the backend's response to the call sending it on."""
    out = workdir / f"strace-{name}.txt"
    tracer = subprocess.Popen(
        ["strace", "-f", "-ttt", "-s", "12", "-e", "trace=readv,writev,sendto,sendmsg,write",
         "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    run_requests(port, count, 0.005)
    time.sleep(0.5)
    tracer.terminate()
    tracer.wait(10)
    gaps = []
    got: float | None = None
    pattern = re.compile(
        r"^\d+\s+(\d+\.\d+)\s+(readv|writev|sendto|sendmsg|write)\((\d+), "
        r"(?:\[\{iov_base=|\{msg_name=NULL, msg_namelen=0, msg_iov=\[\{iov_base=)?\"([^\"]*)"
    )
    for line in out.read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if not m:
            continue
        ts, call, _fd, data = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        if not data.startswith("HTTP/1.1 200"):
            continue
        if call == "readv":
            got = ts
        elif got is not None:
            gaps.append((ts - got) * 1e6)
            got = None
    return median(gaps[2:]) if len(gaps) > 2 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=2.0, help="ms between requests")
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    count, rounds = (100, 1) if args.quick else (args.requests, args.rounds)
    client_edge = configs()["client none"][1]
    chosen = {
        "none": [],
        "metrics": configs()["client packed"][2],
        "heavy-metrics": [heavy_metrics(args.copies)],
        "heavy-upstream": [],
        "heavy-file": [heavy_file(args.copies)],
    }
    sut, load = cpu_split(not args.no_pin)
    if load:
        os.sched_setaffinity(0, load)
    workdir = Path(tempfile.mkdtemp(prefix="pilotfish-log-order-"))
    latency: dict[str, list[float]] = {k: [] for k in chosen}
    cpu: dict[str, list[float]] = {k: [] for k in chosen}
    gaps: dict[str, float] = {}
    with Processes(workdir) as procs:
        backend = free_port()
        boot = backend_bootstrap(backend, free_port())
        (workdir / "backend.json").write_text(json.dumps(boot))
        envoy = str(envoy_binary())
        common = ["--concurrency", "1", "--use-dynamic-base-id", "--log-level", "error"]
        procs.start([envoy, "-c", str(workdir / "backend.json"), *common], "backend.log", cpus=sut)
        proxies = {}
        for name, logs in chosen.items():
            port = free_port()
            path = workdir / f"{name}.json"
            boot = proxy_bootstrap(port, backend, free_port(), client_edge, logs)
            if name == "heavy-upstream":
                hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
                router = hcm["typed_config"]["http_filters"][-1]
                hcm["typed_config"]["http_filters"][-1] = {
                    **router,
                    "typed_config": {
                        **router["typed_config"],
                        "upstream_log": [heavy_metrics(args.copies)],
                    },
                }
            path.write_text(json.dumps(boot))
            proc = procs.start([envoy, "-c", str(path), *common], f"{name}.log", cpus=sut)
            proxies[name] = (port, proc)
        for name, (port, proc) in proxies.items():
            wait_serving(port, proc, name)
            run_requests(port, 100, 0)  # every stat exists, every connection is up
        for _ in range(rounds):
            for name, (port, proc) in proxies.items():
                before = cpu_ns(proc.pid)
                lat = run_requests(port, count, args.gap / 1000)
                cpu[name].append((cpu_ns(proc.pid) - before) / count / 1000)
                latency[name].append(median(lat))
        if args.strace and shutil.which("strace"):
            for name, (port, proc) in proxies.items():
                gaps[name] = strace_gap(port, proc.pid, workdir, name, 60)
    base_lat, base_cpu = median(latency["none"]), median(cpu["none"])
    rows = []
    for name in chosen:
        lat, c = median(latency[name]), median(cpu[name])
        row = [
            name,
            f"{lat:.0f} µs ({min(latency[name]):.0f}-{max(latency[name]):.0f})",
            f"{lat - base_lat:+.0f} µs",
            f"{c:.1f} µs ({min(cpu[name]):.1f}-{max(cpu[name]):.1f})",
            f"{c - base_cpu:+.1f} µs",
        ]
        if gaps:
            row.append(f"{gaps.get(name, float('nan')):.0f} µs")
        rows.append(row)
    headers = ["config", "client latency p50", "latency over none", "proxy CPU / request",
               "CPU over none"]  # fmt: skip
    if gaps:
        headers.append("response read -> sent (strace)")
    print(f"\n{rounds} round(s) of {count} requests, {args.gap} ms apart, medians (ranges):")
    print(table(headers, rows))
    print(f"work dir: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
