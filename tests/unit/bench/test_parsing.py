"""The benchmarks' pure parts: reading wrk's report, proxy-status convergence, tables."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:9080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   412.33us  100.20us   9.87ms   90.12%
    Req/Sec    19.10k     1.01k   21.00k    70.00%
  Latency Distribution
     50%  398.00us
     75%  450.00us
     90%  510.00us
     99%    1.20ms
  190123 requests in 10.00s, 20.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:  19012.30
Transfer/sec:      2.01MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors() -> None:
    dataplane = load("dataplane")
    r = dataplane.parse_wrk(WRK_OUTPUT)
    assert r.rps == pytest.approx(19012.30)
    assert r.p50_ms == pytest.approx(0.398)
    assert r.p99_ms == pytest.approx(1.2)
    assert r.requests == 190123
    assert r.errors == 7


def test_parse_wrk_rejects_output_without_latency_distribution() -> None:
    dataplane = load("dataplane")
    with pytest.raises(ValueError, match="cannot read wrk output"):
        dataplane.parse_wrk("Requests/sec: 10\n")


def test_dump_summary_lists_filters_and_options() -> None:
    dataplane = load("dataplane")
    dump = {
        "configs": [
            {
                "filters": [{"name": "envoy.filters.network.http_connection_manager"}],
                "nested": {"http_filters": [{"name": "envoy.filters.http.fault"}]},
                "retry_policy": {},
            }
        ]
    }
    lines = dataplane.dump_summary(dump)
    assert "filter: envoy.filters.network.http_connection_manager" in lines
    assert "http filter: envoy.filters.http.fault" in lines
    assert "has retry_policy" in lines
    assert "has access_log" not in lines


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def status(**types: tuple[float | None, float | None, str]) -> dict[str, Any]:
    return {
        "types": {
            name: {
                "sent_at": None if sent is None else iso(sent),
                "acked_at": None if acked is None else iso(acked),
                "state": state,
            }
            for name, (sent, acked, state) in types.items()
        }
    }


def test_converged_at_is_the_last_ack_of_what_was_sent_after_the_apply() -> None:
    push = load("push_latency")
    t0 = 1_000_000.0
    s = status(
        CDS=(t0 - 50, t0 - 49, "SYNCED"),  # before the apply: ignored
        LDS=(t0 + 0.10, t0 + 0.12, "SYNCED"),
        RDS=(t0 + 0.11, t0 + 0.15, "SYNCED"),
    )
    assert push.converged_at(s, t0) == pytest.approx(t0 + 0.15)


def test_converged_at_waits_for_rds_and_for_every_ack() -> None:
    push = load("push_latency")
    t0 = 1_000_000.0
    assert push.converged_at(status(RDS=(t0 - 1, t0 - 1, "SYNCED")), t0) is None
    assert push.converged_at(status(RDS=(t0 + 0.1, None, "STALE")), t0) is None
    pending_lds = status(RDS=(t0 + 0.1, t0 + 0.2, "SYNCED"), LDS=(t0 + 0.1, t0, "STALE"))
    assert push.converged_at(pending_lds, t0) is None


def test_table_aligns_columns_as_markdown() -> None:
    benchlib = load("benchlib")
    text = benchlib.table(["a", "bbb"], [[1, 2], ["long", 3]])
    assert text.splitlines() == [
        "| a    | bbb |",
        "|------|-----|",
        "| 1    | 2   |",
        "| long | 3   |",
    ]
    assert benchlib.ratio(3.0, 2.0) == "1.50x"
    assert benchlib.ratio(1.0, 0.0) == "n/a"


def test_translation_bench_runs_and_compares() -> None:
    bench = load("translation")
    figures = bench.measure(services=3, repeat=1)
    assert figures["resources_Cluster"] == 3 * 3 + 4  # 3 per service, 4 fixed and inbound
    assert figures["first"] > 0
    text = bench.report(figures, dict(figures))
    assert "1.00x" in text and "3 services" in text


def test_route_size_parts_add_up_to_the_virtual_host() -> None:
    from envoy.config.core.v3 import base_pb2
    from envoy.config.route.v3 import route_components_pb2 as rc

    size = load("route_size")
    vhost = rc.VirtualHost(
        name="a:80",
        domains=["a", "a:80"],
        request_headers_to_add=[
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key="k", value="v"))
        ],
        routes=[
            rc.Route(
                name="default",
                match=rc.RouteMatch(prefix="/"),
                route=rc.RouteAction(cluster="c", retry_policy=rc.RetryPolicy(retry_on="5xx")),
            )
        ],
    )
    p = size.parts(vhost)
    assert p["total"] == vhost.ByteSize()
    assert p["domains"] > 0 and p["headers"] > 0 and p["retries"] > 0 and p["rest"] > 0
    assert p["domains"] + p["headers"] + p["retries"] + p["rest"] == p["total"]
