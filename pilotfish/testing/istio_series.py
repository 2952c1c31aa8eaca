"""Synthetic Istio standard metrics in a real Prometheus, for dashboard tests and benchmarks.

Not product code. :func:`openmetrics` writes ``istio_requests_total`` (both reporters, with
their response codes and ``connection_security_policy``) and
``istio_request_duration_milliseconds_bucket`` series for a list of edges, as steadily growing
counters over a time span; :func:`backfill` turns that text into TSDB blocks with
``promtool tsdb create-blocks-from openmetrics``; :class:`BackfilledPrometheus` runs Debian's
``prometheus`` over those blocks on a free port, optionally with recording rules (the real
Prometheus evaluates them over the backfilled series, as it would over scraped ones).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

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

    def __init__(self, root: Path, port: int, rules: Mapping[str, Any] | None = None) -> None:
        self.root = root
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.rules = rules
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    def _write_config(self) -> None:
        text = "global: {scrape_interval: 15s, evaluation_interval: 15s}\nscrape_configs: []\n"
        if self.rules is not None:
            rules = self.root / "rules.yml"
            rules.write_text(yaml.safe_dump(dict(self.rules), sort_keys=False))
            text += f"rule_files: [{json.dumps(str(rules))}]\n"
        self.config.write_text(text)

    def load_rules(self, rules: Mapping[str, Any] | None) -> None:
        """Load (or, with ``None``, drop) recording rules: rewrite the config and make
        Prometheus reload it (``SIGHUP``)."""
        assert self.proc is not None, "prometheus is not running"
        self.rules = rules
        self._write_config()
        self.proc.send_signal(signal.SIGHUP)

    def rule_groups(self) -> list[dict[str, Any]]:
        """``/api/v1/rules``: the loaded groups with their last evaluation and its duration."""
        body = httpx.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return list(body["data"]["groups"])

    def wait_for_rules(self, groups: Sequence[str], timeout: float = 90.0) -> dict[str, float]:
        """Until each group named has been evaluated once since it was loaded; how long (s)
        that first evaluation of each took."""
        deadline = time.monotonic() + timeout
        first: dict[str, float] = {}
        while time.monotonic() < deadline:
            for g in self.rule_groups():
                evaluated = not str(g.get("lastEvaluation", "")).startswith("0001-")
                if evaluated and g["name"] in groups and g["name"] not in first:
                    first[g["name"]] = float(g["evaluationTime"])
            if set(groups) <= set(first):
                return first
            time.sleep(0.2)
        raise RuntimeError(f"prometheus did not evaluate the rule groups {sorted(groups)}")

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (apt-get install prometheus)")
        config = self.config
        self._write_config()
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
    root: Path,
    port: int,
    edges: Sequence[SyntheticEdge],
    span: int = 600,
    rules: Mapping[str, Any] | None = None,
) -> BackfilledPrometheus:
    """A running Prometheus holding ``edges``' series for the last ``span`` seconds (and
    evaluating ``rules`` over them, when given)."""
    root.mkdir(parents=True, exist_ok=True)
    end = int(time.time())
    text = root / "series.om"
    with open(text, "w") as f:
        write_openmetrics(f, edges, end - span, end)
    backfill(text, root / "data")
    prom = BackfilledPrometheus(root, port, rules)
    prom.start()
    return prom
