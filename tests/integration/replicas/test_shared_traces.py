"""Two control-plane replicas (real ``pilotfish server`` processes) on one PostgreSQL database
keep spans there: a span a real Envoy reports to replica A's receiver is answered by replica
B's Jaeger query API, and the other way round.

Each replica runs its trace collector on an address of its own (127.0.0.2 and 127.0.0.3, as
replicas on two hosts would: the receivers' ports are fixed) and its query API on its own
port of 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import ControlPlane, eventually, start_control_plane
from tests.integration.telemetry.conftest import until
from tests.integration.telemetry.test_envoy_tracers import (
    SERVICE,
    StartEnvoy,
    bootstrap,
    otel_tracer,
    request_productpage,
    run_envoy,
    zipkin_tracer,
)
from tests.postgres import PostgresCluster

__all__ = ["run_envoy"]

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

OTLP_GRPC, ZIPKIN = 4317, 9411


class Replica:
    def __init__(self, cp: ControlPlane, receivers: str, query_port: int) -> None:
        self.cp = cp
        self.receivers = receivers
        self.query = f"http://127.0.0.1:{query_port}"

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(self.query + path, params=params, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def trace_ids(self) -> list[str]:
        found = self.get("/api/traces", service=SERVICE, lookback="1h")["data"]
        return sorted(trace["traceID"] for trace in found)


@pytest.fixture
def replicas(
    tmp_path: Path, free_port: Callable[[], int], postgres_cluster: PostgresCluster
) -> Iterator[tuple[Replica, Replica]]:
    url = postgres_cluster.new_database()
    started: list[Replica] = []
    try:
        for name, receivers in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
            (tmp_path / name).mkdir()
            query_port = free_port()
            cp = start_control_plane(
                tmp_path / name / "data",
                tmp_path / name / "config",
                free_port(),
                free_port(),
                ("--store", url, "--ca-dir", str(tmp_path / "shared-ca"), "--trace-collector",
                 "--trace-query-port", str(query_port)),
                xds_host=receivers,
            )  # fmt: skip
            started.append(Replica(cp, receivers, query_port))
            eventually(
                lambda log=cp.log: "spans in postgresql://" in log.read_text(),  # type: ignore[misc]
                30,
                f"replica {name}'s trace collector, spans in PostgreSQL",
            )
        yield started[0], started[1]
    finally:
        for replica in started:
            replica.cp.kill()


async def test_a_span_sent_to_one_replica_is_answered_by_the_other(
    replicas: tuple[Replica, Replica], run_envoy: StartEnvoy, free_port: Callable[[], int]
) -> None:
    a, b = replicas
    assert a.trace_ids() == b.trace_ids() == []

    # Envoy's Zipkin tracer reports to replica A; replica B answers.
    provider, cluster = zipkin_tracer(ZIPKIN, address=a.receivers)
    listen = free_port()
    await run_envoy(bootstrap(provider, cluster, listen, free_port()))
    await request_productpage(listen)
    await poll(lambda: len(b.trace_ids()) == 1, "replica B to answer the span sent to A")
    (first,) = b.trace_ids()
    assert b.get("/api/services")["data"] == [SERVICE]
    assert b.get("/api/services/" + SERVICE + "/operations")["data"] == ["GET /productpage"]
    trace = b.get(f"/api/traces/{first}")["data"][0]
    span = trace["spans"][0]
    assert span["operationName"] == "GET /productpage"
    assert trace["processes"][span["processID"]]["serviceName"] == SERVICE
    assert a.get(f"/api/traces/{first}")["data"][0]["traceID"] == first

    # Envoy's OpenTelemetry tracer (OTLP gRPC) reports to replica B; replica A answers.
    provider, cluster = otel_tracer(OTLP_GRPC, address=b.receivers)
    listen = free_port()
    await run_envoy(bootstrap(provider, cluster, listen, free_port()))
    await request_productpage(listen)
    await poll(lambda: len(a.trace_ids()) == 2, "replica A to answer the span sent to B")
    assert a.trace_ids() == b.trace_ids()
    (second,) = set(a.trace_ids()) - {first}
    tags = {
        t["key"]: t["value"] for t in a.get(f"/api/traces/{second}")["data"][0]["spans"][0]["tags"]
    }
    assert tags["span.kind"] == "server"


async def poll(check: Callable[[], bool], what: str) -> None:
    async def ready() -> bool:
        return check()

    await until(ready, timeout=30, what=what)
