"""Synthetic Istio standard metrics in a real Prometheus, for dashboard tests and benchmarks.

Not product code. :func:`openmetrics` writes ``istio_requests_total`` (both reporters, with
their response codes and ``connection_security_policy``) and
``istio_request_duration_milliseconds_bucket`` series for a list of edges, as steadily growing
counters over a time span; :func:`backfill` turns that text into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``; :class:`BackfilledPrometheus` runs Debian's
``prometheus`` over those blocks on a free port.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

#: Istio's request-duration buckets (ms) up to 10 s, then +Inf.
DURATION_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class Workload:
    name: str
    app: str
    version: str
    namespace: str = "default"
    #: The caller has a sidecar (else the server reports it as ``unknown``).
    sidecar: bool = True


@dataclass(frozen=True)
class SyntheticEdge:
    source: Workload
    destination: Workload
    rps: float
    #: Share of requests answered 503 (seen by both reporters).
    error_ratio: float = 0.0
    mtls: bool = True
    #: Median response time (ms); the distribution is log-normal.
    median_ms: float = 20.0


def _labels(edge: SyntheticEdge, reporter: str) -> dict[str, str]:
    s, d = edge.source, edge.destination
    known = s.sidecar and (edge.mtls or reporter == "source")
    src = {
        "source_workload": s.name if known else "unknown",
        "source_workload_namespace": s.namespace if known else "unknown",
        "source_app": s.app if known else "unknown",
        "source_version": s.version if known else "unknown",
        "source_canonical_service": s.app if known else "unknown",
    }
    policy = "unknown" if reporter == "source" else ("mutual_tls" if edge.mtls else "none")
    return {
        "reporter": reporter,
        **src,
        "destination_workload": d.name,
        "destination_workload_namespace": d.namespace,
        "destination_app": d.app,
        "destination_version": d.version,
        "destination_service": f"{d.app}.{d.namespace}.svc.cluster.local",
        "destination_service_name": d.app,
        "destination_service_namespace": d.namespace,
        "request_protocol": "http",
        "response_flags": "-",
        "connection_security_policy": policy,
    }


def _fmt(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def _share_below(le: float, median: float, sigma: float = 0.6) -> float:
    return 0.5 * (1 + math.erf(math.log(le / median) / (sigma * math.sqrt(2))))


def openmetrics(
    edges: Sequence[SyntheticEdge], start: int, end: int, step: int = 15
) -> Iterator[str]:
    """OpenMetrics lines (ordered by time, as promtool needs), ending with ``# EOF``."""
    # name{labels} -> rate per second; callers the server cannot tell apart (plaintext, no
    # sidecar) add up into one series, as in a real mesh.
    series: dict[str, float] = {}
    for edge in edges:
        reporters = ("source", "destination") if edge.source.sidecar else ("destination",)
        for reporter in reporters:
            labels = _labels(edge, reporter)
            for code, share in (("200", 1 - edge.error_ratio), ("503", edge.error_ratio)):
                if share > 0:
                    text = _fmt({**labels, "response_code": code})
                    name = f"istio_requests_total{{{text}}}"
                    series[name] = series.get(name, 0.0) + edge.rps * share
            base = {k: v for k, v in labels.items() if k != "response_flags"}
            base["response_code"] = "200"
            for le in (*DURATION_BUCKETS, math.inf):
                share = 1.0 if le == math.inf else _share_below(le, edge.median_ms)
                bound = "+Inf" if le == math.inf else f"{le:g}"
                text = _fmt({**base, "le": bound})
                name = f"istio_request_duration_milliseconds_bucket{{{text}}}"
                series[name] = series.get(name, 0.0) + edge.rps * share
    for t in range(start, end + 1, step):
        elapsed = t - start
        for name, rate in series.items():
            yield f"{name} {rate * elapsed:.3f} {t}\n"
    yield "# EOF\n"


def write_openmetrics(out: IO[str], edges: Sequence[SyntheticEdge], start: int, end: int) -> None:
    for line in openmetrics(edges, start, end):
        out.write(line)


def backfill(openmetrics_file: Path, data_dir: Path) -> None:
    """``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR``."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool is not installed (apt-get install prometheus)")
    data_dir.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics_file),
         str(data_dir)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"promtool could not backfill: {(res.stderr or res.stdout)[-2000:]}")


class BackfilledPrometheus:
    """Debian's ``prometheus`` over a data directory, scraping nothing, on ``port``."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        config = self.root / "prometheus.yml"
        config.write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
        log = open(self.root / "prometheus.log", "wb")  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.root / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=2d",
                "--query.lookback-delta=5m",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "prometheus exited: " + (self.root / "prometheus.log").read_text()[-2000:]
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("prometheus did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def filled_prometheus(
    root: Path, port: int, edges: Sequence[SyntheticEdge], span: int = 600
) -> BackfilledPrometheus:
    """A running Prometheus holding ``edges``' series for the last ``span`` seconds."""
    root.mkdir(parents=True, exist_ok=True)
    end = int(time.time())
    text = root / "series.om"
    with open(text, "w") as f:
        write_openmetrics(f, edges, end - span, end)
    backfill(text, root / "data")
    prom = BackfilledPrometheus(root, port)
    prom.start()
    return prom
