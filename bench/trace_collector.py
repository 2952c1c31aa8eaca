"""The trace collector's ingest rate: spans stored per second on one core.

Run from the repository root::

    .venv/bin/python bench/trace_collector.py            # 100,000 spans per receiver
    .venv/bin/python bench/trace_collector.py --quick    # 5,000 spans per receiver

The collector (:class:`pilotfish.telemetry.TraceCollector` with its SQLite store in a temporary
data directory) runs in a child process pinned to one CPU; this process, on the other CPUs,
sends spans shaped like a sidecar's (an Istio-style service name, ~14 attributes) in batches
of ``--batch`` over ``--concurrency`` connections, first as OTLP gRPC Export requests, then as
Zipkin v2 JSON posts. Each request returns after its spans are committed, so the rate is
spans / wall time from the first request to the last answer. It also prints the collector's
CPU seconds (``/proc``) per 10,000 spans. No exit code depends on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script (``python bench/trace_collector.py``): the helpers live next to it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc
import httpx
from benchlib import cpu_seconds, cpu_split, machine, pin, table
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

DOMAIN = "default.svc.cluster.local"
SERVICES = ["productpage.default", "details.default", "reviews.default", "ratings.default"]


def serve(data_dir: Path, port_file: Path) -> None:
    """The child: a collector on kernel-picked ports until stdin closes."""
    from pilotfish.telemetry import CollectorSettings, TraceCollector

    async def main() -> None:
        settings = CollectorSettings(
            data_dir=data_dir, otlp_grpc_port=0, otlp_http_port=None, zipkin_port=0, query_port=0
        )
        collector = TraceCollector(settings)
        await collector.start()
        port_file.write_text(json.dumps(collector.ports))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await collector.stop()

    asyncio.run(main())


def _attrs(i: int) -> dict[str, str]:
    return {
        "node_id": f"sidecar~10.88.0.{i % 250}~productpage-{i % 7}.default~{DOMAIN}",
        "zone": "",
        "guid:x-request-id": f"{random.getrandbits(64):016x}-{i}",
        "http.url": f"http://reviews:9080/reviews/{i % 100}",
        "http.method": "GET",
        "downstream_cluster": "-",
        "user_agent": "python-requests/2.31.0",
        "http.protocol": "HTTP/1.1",
        "peer.address": f"10.88.0.{i % 250}",
        "request_size": "0",
        "upstream_cluster": "outbound|9080|v2|reviews.default.svc.cluster.local",
        "upstream_cluster.name": "outbound|9080|v2|reviews.default.svc.cluster.local",
        "http.status_code": "200" if i % 50 else "503",
        "response_size": "358",
    }


def otlp_batches(total: int, batch: int) -> list[bytes]:
    now_ns = time.time_ns()
    out = []
    for b in range(0, total, batch):
        spans = []
        for i in range(b, min(total, b + batch)):
            spans.append(
                trace_pb2.Span(
                    trace_id=random.getrandbits(128).to_bytes(16, "big"),
                    span_id=random.getrandbits(64).to_bytes(8, "big"),
                    name=f"reviews.default.svc.cluster.local:9080/reviews/{i % 100}",
                    kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                    start_time_unix_nano=now_ns - 1_000_000_000 + i,
                    end_time_unix_nano=now_ns - 1_000_000_000 + i + 3_000_000,
                    attributes=[
                        common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
                        for k, v in _attrs(i).items()
                    ],
                )
            )
        service = common_pb2.KeyValue(
            key="service.name", value=common_pb2.AnyValue(string_value=SERVICES[b % 4])
        )
        request = trace_service_pb2.ExportTraceServiceRequest(
            resource_spans=[
                trace_pb2.ResourceSpans(
                    resource={"attributes": [service]},
                    scope_spans=[trace_pb2.ScopeSpans(spans=spans)],
                )
            ]
        )
        out.append(request.SerializeToString())
    return out


def zipkin_batches(total: int, batch: int) -> list[bytes]:
    now_us = time.time_ns() // 1000
    out = []
    for b in range(0, total, batch):
        spans = [
            {
                "traceId": f"{random.getrandbits(64):016x}",
                "id": f"{random.getrandbits(64):016x}",
                "name": f"reviews.default.svc.cluster.local:9080/reviews/{i % 100}",
                "kind": "CLIENT",
                "timestamp": now_us - 1_000_000 + i,
                "duration": 3000,
                "localEndpoint": {"serviceName": SERVICES[b % 4], "ipv4": "10.88.0.3"},
                "tags": _attrs(i),
            }
            for i in range(b, min(total, b + batch))
        ]
        out.append(json.dumps(spans).encode())
    return out


async def run_queue(bodies: list[bytes], concurrency: int, send: object) -> None:
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker() -> None:
        while not queue.empty():
            await send(queue.get_nowait())  # type: ignore[operator]

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def send_otlp(port: int, bodies: list[bytes], concurrency: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)

        async def send(body: bytes) -> None:
            request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            await stub.Export(request, timeout=60)

        await run_queue(bodies, concurrency, send)


async def send_zipkin(port: int, bodies: list[bytes], concurrency: int) -> None:
    url = f"http://127.0.0.1:{port}/api/v2/spans"
    async with httpx.AsyncClient(timeout=60) as client:

        async def send(body: bytes) -> None:
            r = await client.post(url, content=body, headers={"content-type": "application/json"})
            r.raise_for_status()

        await run_queue(bodies, concurrency, send)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--serve", nargs=2, metavar=("DATA_DIR", "PORT_FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), Path(args.serve[1]))
        return
    total = 5_000 if args.quick else args.spans
    collector_cpus, client_cpus = cpu_split(True)
    with tempfile.TemporaryDirectory(prefix="pilotfish-bench-traces-") as tmp:
        port_file = Path(tmp) / "ports.json"
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", tmp, str(port_file)],
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        pin(child.pid, collector_cpus)
        pin(os.getpid(), client_cpus)
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text():
                if time.monotonic() > deadline or child.poll() is not None:
                    raise SystemExit("the collector did not start")
                time.sleep(0.05)
            ports = json.loads(port_file.read_text())
            rows = []
            for name, make, send, port in (
                ("OTLP gRPC", otlp_batches, send_otlp, ports["otlp_grpc"]),
                ("Zipkin v2 JSON", zipkin_batches, send_zipkin, ports["zipkin"]),
            ):
                bodies = make(total, args.batch)
                cpu_before = cpu_seconds(child.pid)
                start = time.monotonic()
                asyncio.run(send(port, bodies, args.concurrency))
                elapsed = time.monotonic() - start
                cpu = cpu_seconds(child.pid) - cpu_before
                rows.append(
                    (
                        name,
                        f"{total:,}",
                        f"{total / elapsed:,.0f}",
                        f"{cpu / total * 10_000:.2f}",
                    )
                )
            db = Path(tmp) / "traces.db"
            size_mb = sum(p.stat().st_size for p in db.parent.glob("traces.db*")) / 1e6
        finally:
            if child.stdin:
                child.stdin.close()
            child.wait(timeout=30)
    pinned = f"pinned to CPU {sorted(collector_cpus)}" if collector_cpus else "not pinned"
    print(f"# Trace collector ingest, one process {pinned}; {machine()}")
    print(f"# batches of {args.batch} spans over {args.concurrency} connections\n")
    print(table(["receiver", "spans", "spans/s stored", "collector CPU s / 10k spans"], rows))
    print(f"\nSQLite file after {2 * total:,} spans: {size_mb:.1f} MB")


if __name__ == "__main__":
    main()
