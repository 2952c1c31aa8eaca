"""Spans sent with the real protocols (OTLP over gRPC and HTTP, Zipkin v2 JSON) and read back
through Jaeger's query API with each of its filters."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from pilotfish.telemetry import TraceCollector

pytestmark = pytest.mark.integration

Query = Callable[..., Awaitable[Any]]


def attr(key: str, value: str) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))


def otlp_request(
    service: str, trace_id: str, spans: list[tuple[str, str, str, int, int, dict[str, str]]]
) -> trace_service_pb2.ExportTraceServiceRequest:
    """``spans``: (span id, parent id, name, start µs, duration µs, attributes)."""
    out = []
    for span_id, parent, name, start, duration, tags in spans:
        out.append(
            trace_pb2.Span(
                trace_id=bytes.fromhex(trace_id),
                span_id=bytes.fromhex(span_id),
                parent_span_id=bytes.fromhex(parent) if parent else b"",
                name=name,
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start * 1000,
                end_time_unix_nano=(start + duration) * 1000,
                attributes=[attr(k, v) for k, v in tags.items()],
            )
        )
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource={"attributes": [attr("service.name", service)]},
                scope_spans=[trace_pb2.ScopeSpans(spans=out)],
            )
        ]
    )


def now_us() -> int:
    return int(time.time() * 1_000_000)


async def test_otlp_grpc_export_then_query_every_filter(
    collector: TraceCollector, query: Query
) -> None:
    t0 = now_us() - 10_000_000
    trace_a, trace_b = "0af7651916cd43dd8448eb211c80319c", "1af7651916cd43dd8448eb211c80319c"
    request_a = otlp_request(
        "productpage.default",
        trace_a,
        [
            (
                "b7ad6b7169203331",
                "",
                "GET /productpage",
                t0,
                1_500_000,
                {"http.status_code": "200"},
            ),
            (
                "b7ad6b7169203332",
                "b7ad6b7169203331",
                "GET /login",
                t0 + 10,
                2000,
                {"user": "jason"},
            ),
        ],
    )
    request_b = otlp_request(
        "productpage.default",
        trace_b,
        [
            (
                "c7ad6b7169203331",
                "",
                "GET /productpage",
                t0 + 5_000_000,
                90_000,
                {"http.status_code": "500"},
            )
        ],
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{collector.ports['otlp_grpc']}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for request in (request_a, request_b):
            response = await stub.Export(request, timeout=10)
            assert not response.partial_success.rejected_spans

    assert (await query("/api/services"))["data"] == ["productpage.default"]
    ops = await query("/api/services/productpage.default/operations")
    assert ops["data"] == ["GET /login", "GET /productpage"]
    kinds = await query("/api/operations", service="productpage.default", spanKind="server")
    assert {"name": "GET /login", "spanKind": "server"} in kinds["data"]

    async def ids(**params: Any) -> list[str]:
        body = await query("/api/traces", service="productpage.default", **params)
        assert set(body) == {"data", "total", "limit", "offset", "errors"}
        assert body["errors"] is None
        return [t["traceID"] for t in body["data"]]

    assert await ids() == [trace_b, trace_a]
    assert await ids(limit=1) == [trace_b]
    assert await ids(operation="GET /login") == [trace_a]
    assert await ids(tags=json.dumps({"http.status_code": "500"})) == [trace_b]
    assert await ids(tags=json.dumps({"user": "jason"}), operation="GET /login") == [trace_a]
    assert await ids(minDuration="1.2s") == [trace_a]
    assert await ids(maxDuration="100ms") == [trace_b, trace_a]  # GET /login is 2ms
    assert await ids(minDuration="50ms", maxDuration="100ms") == [trace_b]
    assert await ids(start=t0 + 1_000_000, end=now_us()) == [trace_b]
    assert await ids(start=t0 - 1000, end=t0 + 100) == [trace_a]
    assert await ids(lookback="1s") == []
    assert await ids(lookback="1h") == [trace_b, trace_a]

    [trace] = (await query(f"/api/traces/{trace_a}"))["data"]
    assert trace["traceID"] == trace_a
    assert [s["operationName"] for s in trace["spans"]] == ["GET /productpage", "GET /login"]
    login = trace["spans"][1]
    assert login["references"] == [
        {"refType": "CHILD_OF", "traceID": trace_a, "spanID": "b7ad6b7169203331"}
    ]
    assert login["startTime"] == t0 + 10 and login["duration"] == 2000
    assert {"key": "user", "type": "string", "value": "jason"} in login["tags"]
    assert trace["processes"][login["processID"]]["serviceName"] == "productpage.default"

    missing = await query("/api/traces/00000000000000000000000000000abc", expect=404)
    assert missing["data"] is None and missing["errors"][0]["code"] == 404
    bad = await query("/api/traces", expect=400)
    assert "service" in bad["errors"][0]["msg"]
    assert collector.stats.spans_stored == 3


async def test_otlp_http_protobuf_and_json(collector: TraceCollector, query: Query) -> None:
    t0 = now_us() - 1_000_000
    proto = otlp_request(
        "reviews.default",
        "2af7651916cd43dd8448eb211c80319c",
        [("d7ad6b7169203331", "", "GET /reviews/0", t0, 7000, {})],
    )
    json_body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": "ratings"}},
                        {"key": "k8s.namespace.name", "value": {"stringValue": "default"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "2af7651916cd43dd8448eb211c80319c",
                                "spanId": "e7ad6b7169203331",
                                "parentSpanId": "d7ad6b7169203331",
                                "name": "GET /ratings/0",
                                "kind": 2,
                                "startTimeUnixNano": str((t0 + 100) * 1000),
                                "endTimeUnixNano": str((t0 + 3100) * 1000),
                                "attributes": [
                                    {"key": "http.status_code", "value": {"intValue": "200"}}
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    url = f"http://127.0.0.1:{collector.ports['otlp_http']}/v1/traces"
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            url,
            content=proto.SerializeToString(),
            headers={"content-type": "application/x-protobuf"},
        )
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
        trace_service_pb2.ExportTraceServiceResponse.FromString(r.content)
        r = await client.post(url, json=json_body)
        assert r.status_code == 200 and r.json() == {}
        assert (
            await client.post(url, content=b"{", headers={"content-type": "application/json"})
        ).status_code == 400
        assert (
            await client.post(url, content=b"x", headers={"content-type": "text/csv"})
        ).status_code == 415

    assert (await query("/api/services"))["data"] == ["ratings.default", "reviews.default"]
    body = await query("/api/traces", service="ratings.default", tags='{"http.status_code":"200"}')
    [trace] = body["data"]
    assert [s["operationName"] for s in trace["spans"]] == ["GET /reviews/0", "GET /ratings/0"]
    ratings = trace["spans"][1]
    assert {"key": "http.status_code", "type": "int64", "value": 200} in ratings["tags"]
    deps = await query("/api/dependencies", endTs=now_us() // 1000, lookback=60_000)
    assert deps["data"] == [
        {"parent": "reviews.default", "child": "ratings.default", "callCount": 1}
    ]


async def test_zipkin_v2_json(collector: TraceCollector, query: Query) -> None:
    t0 = now_us() - 1_000_000
    spans = [
        {
            "traceId": "5af7651916cd43dd",
            "id": "0000000000000001",
            "name": "details.default.svc.cluster.local:9080/*",
            "kind": "CLIENT",
            "timestamp": t0,
            "duration": 4000,
            "localEndpoint": {"serviceName": "productpage.default", "ipv4": "10.88.0.3"},
            "tags": {"http.status_code": "200", "upstream_cluster": "outbound|9080||details"},
        },
        {
            "traceId": "5af7651916cd43dd",
            "id": "0000000000000001",
            "name": "details.default.svc.cluster.local:9080/*",
            "kind": "SERVER",
            "shared": True,
            "timestamp": t0 + 300,
            "duration": 3000,
            "localEndpoint": {"serviceName": "details.default", "ipv4": "10.88.0.4"},
            "tags": {"http.status_code": "200"},
        },
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(
            f"http://127.0.0.1:{collector.ports['zipkin']}/api/v2/spans", json=spans
        )
        assert r.status_code == 202
        bad = await client.post(
            f"http://127.0.0.1:{collector.ports['zipkin']}/api/v2/spans", json={}
        )
        assert bad.status_code == 400

    assert (await query("/api/services"))["data"] == ["details.default", "productpage.default"]
    [trace] = (await query("/api/traces", service="details.default", minDuration="2ms"))["data"]
    client_span, server_span = trace["spans"]
    assert server_span["references"][0]["spanID"] == client_span["spanID"]
    assert trace["processes"][server_span["processID"]]["serviceName"] == "details.default"
    deps = await query("/api/dependencies")
    assert deps["data"] == [
        {"parent": "productpage.default", "child": "details.default", "callCount": 1}
    ]


async def test_query_api_listens_on_loopback_only(collector: TraceCollector) -> None:
    assert collector.settings.query_host == "127.0.0.1"
    with pytest.raises(ValueError, match="loopback"):
        type(collector.settings)(data_dir=collector.settings.data_dir, query_host="0.0.0.0")
