"""Conversions: OTLP and Zipkin in, Jaeger's JSON out, Go durations."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from pilotfish.telemetry import convert
from pilotfish.telemetry.convert import (
    ExportTraceServiceRequest,
    check_otlp_protos,
    jaeger_trace,
    otlp_request_from_json,
    parse_duration_us,
    spans_from_otlp,
    spans_from_zipkin,
)
from pilotfish.telemetry.model import Log, Span, span_id_of, trace_id_of

TRACE = bytes.fromhex("5b8efff798038103d269b633813fc60c")
SPAN = bytes.fromhex("eee19b7ec3c1b174")
PARENT = bytes.fromhex("eee19b7ec3c1b173")


def kv(key: str, **value: object) -> common_pb2.KeyValue:
    return common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(**value))  # type: ignore[arg-type]


def otlp_request(**resource: str) -> ExportTraceServiceRequest:
    span = trace_pb2.Span(
        trace_id=TRACE,
        span_id=SPAN,
        parent_span_id=PARENT,
        name="reviews.default.svc.cluster.local:9080/*",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=1_700_000_000_123_456_789,
        end_time_unix_nano=1_700_000_000_223_456_789,
        attributes=[
            kv("http.status_code", string_value="503"),
            kv("upstream_cluster", string_value="outbound|9080||reviews"),
            kv("retries", int_value=2),
            kv("sampled", bool_value=True),
            kv("ratio", double_value=0.5),
            kv(
                "list", array_value=common_pb2.ArrayValue(values=[common_pb2.AnyValue(int_value=1)])
            ),
        ],
        status=trace_pb2.Status(code=trace_pb2.Status.STATUS_CODE_ERROR, message="boom"),
        events=[trace_pb2.Span.Event(time_unix_nano=1_700_000_000_200_000_000, name="retry")],
    )
    attrs = [kv(k, string_value=v) for k, v in resource.items()]
    return ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource={"attributes": attrs},
                scope_spans=[trace_pb2.ScopeSpans(scope={"name": "envoy"}, spans=[span])],
            )
        ]
    )


def test_otlp_span_to_internal() -> None:
    req = otlp_request(**{"service.name": "productpage.default", "host.name": "pp-1"})
    converted = spans_from_otlp(req)
    assert converted.rejected == 0
    [span] = converted.spans
    assert span.trace_id == "5b8efff798038103d269b633813fc60c"
    assert span.span_id == "eee19b7ec3c1b174"
    assert span.parent_id == "eee19b7ec3c1b173"
    assert span.service == "productpage.default"
    assert span.operation == "reviews.default.svc.cluster.local:9080/*"
    assert span.kind == "client"
    assert span.start_us == 1_700_000_000_123_456
    assert span.duration_us == 100_000
    assert span.tags["http.status_code"] == "503"
    assert span.tags["retries"] == 2
    assert span.tags["sampled"] is True
    assert span.tags["ratio"] == 0.5
    assert span.tags["list"] == "[1]"
    assert span.tags["error"] is True
    assert span.tags["otel.status_code"] == "ERROR"
    assert span.tags["otel.status_description"] == "boom"
    assert span.tags["otel.scope.name"] == "envoy"
    assert span.process_tags == {"host.name": "pp-1"}
    assert span.logs == [Log(1_700_000_000_200_000, {"event": "retry"})]


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ({"service.name": "reviews.default"}, "reviews.default"),
        ({"service.name": "reviews", "k8s.namespace.name": "bookinfo"}, "reviews.bookinfo"),
        ({"service.name": "reviews", "service.namespace": "ns"}, "reviews.ns"),
        ({"service.name": "unknown_service:python", "app": "ratings"}, "ratings"),
        ({"app": "ratings", "k8s.namespace.name": "default"}, "ratings.default"),
        ({}, "unknown"),
    ],
)
def test_otlp_service_name_follows_istio(resource: dict[str, str], expected: str) -> None:
    [span] = spans_from_otlp(otlp_request(**resource)).spans
    assert span.service == expected


def test_otlp_span_without_ids_is_rejected_not_stored() -> None:
    req = otlp_request(**{"service.name": "a"})
    req.resource_spans[0].scope_spans[0].spans.add(name="no ids", start_time_unix_nano=1)
    converted = spans_from_otlp(req)
    assert len(converted.spans) == 1
    assert converted.rejected == 1


def test_otlp_json_has_hex_ids_and_string_ints() -> None:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "a.b"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "sdk"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "",
                                "name": "op",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": "1544712661000000000",
                                "attributes": [{"key": "n", "value": {"intValue": "42"}}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    [span] = spans_from_otlp(otlp_request_from_json(json.dumps(body))).spans
    assert (span.trace_id, span.span_id, span.parent_id) == (
        "5b8efff798038103d269b633813fc60c",
        "eee19b7ec3c1b174",
        "",
    )
    assert (span.service, span.kind, span.duration_us, span.tags["n"]) == (
        "a.b",
        "server",
        1_000_000,
        42,
    )


def test_otlp_json_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        otlp_request_from_json(b"not json")
    with pytest.raises(ValueError):
        otlp_request_from_json(b"[]")


def test_installed_protos_do_not_drop_spans() -> None:
    """An old copy of opentelemetry/proto (xds-protos ships one) reads current OTLP requests
    with no spans at all if trusted blindly; the collector must get the span out."""
    check_otlp_protos()
    # The same request, serialized by the installed classes, decoded from the raw bytes.
    wire = otlp_request(**{"service.name": "a"}).SerializeToString()
    assert len(spans_from_otlp(ExportTraceServiceRequest.FromString(wire)).spans) == 1


def test_old_proto_layout_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decoder that silently reads no spans stops the collector from starting."""
    monkeypatch.setattr(convert, "spans_from_otlp", lambda request: convert.Converted([]))
    with pytest.raises(convert.OtlpProtoError, match="opentelemetry-proto"):
        check_otlp_protos()


def test_zipkin_span_to_internal() -> None:
    converted = spans_from_zipkin(
        [
            {
                "traceId": "463ac35c9f6413ad",
                "id": "a2fb4a1d1a96d312",
                "parentId": "0000000000000001",
                "name": "get /reviews/0",
                "timestamp": 1_700_000_000_000_000,
                "duration": 2500,
                "kind": "CLIENT",
                "localEndpoint": {"serviceName": "productpage.default", "ipv4": "10.1.0.5"},
                "remoteEndpoint": {"ipv4": "10.1.0.7", "port": 9080},
                "tags": {"http.status_code": "500", "error": "upstream reset"},
                "annotations": [{"timestamp": 1_700_000_000_001_000, "value": "ws"}],
            },
            {"traceId": "463ac35c9f6413ad", "name": "no id", "timestamp": 1},
            {"traceId": "463ac35c9f6413ad", "id": "01", "name": "no timestamp"},
        ]
    )
    assert converted.rejected == 2
    [span] = converted.spans
    assert (span.trace_id, span.span_id, span.parent_id) == (
        "463ac35c9f6413ad",
        "a2fb4a1d1a96d312",
        "0000000000000001",
    )
    assert span.service == "productpage.default"
    assert (span.operation, span.kind, span.start_us, span.duration_us) == (
        "get /reviews/0",
        "client",
        1_700_000_000_000_000,
        2500,
    )
    assert span.tags["error"] is True
    assert span.tags["error.message"] == "upstream reset"
    assert span.tags["peer.ipv4"] == "10.1.0.7"
    assert span.tags["peer.port"] == 9080
    assert span.process_tags == {"ip": "10.1.0.5"}
    assert span.logs == [Log(1_700_000_000_001_000, {"event": "ws"})]


def test_zipkin_body_must_be_a_list() -> None:
    with pytest.raises(ValueError):
        spans_from_zipkin({"traceId": "1"})


def test_ids_are_normalized_as_jaeger_spells_them() -> None:
    assert trace_id_of("0000000000000000463AC35C9F6413AD") == "463ac35c9f6413ad"
    assert trace_id_of(bytes(8) + bytes.fromhex("463ac35c9f6413ad")) == "463ac35c9f6413ad"
    assert trace_id_of("1" * 32) == "1" * 32
    assert span_id_of("1") == "0000000000000001"
    for bad in ("", "0", "xyz", "0x12", "1_2", "1" * 33):
        with pytest.raises(ValueError):
            trace_id_of(bad)


def span(span_id: str, parent: str, service: str, kind: str, start: int = 10) -> Span:
    return Span("abc", span_id, parent, service, f"op-{span_id}", start, 5, kind)


def test_jaeger_trace_shape() -> None:
    root = span("0000000000000001", "", "productpage.default", "server", start=1)
    root.tags = {"http.status_code": "200", "error": False, "n": 3, "f": 1.5}
    root.process_tags = {"ip": "10.0.0.1"}
    root.logs = [Log(2, {"event": "x"})]
    child = span("0000000000000002", "0000000000000001", "reviews.default", "client", start=2)
    child.links = [("def", "0000000000000009")]
    other = span("0000000000000003", "0000000000000001", "productpage.default", "", start=3)
    other.process_tags = {"ip": "10.0.0.1"}
    trace = jaeger_trace([other, child, root])
    assert trace["traceID"] == "abc"
    assert [s["spanID"] for s in trace["spans"]] == [
        "0000000000000001",
        "0000000000000002",
        "0000000000000003",
    ]
    first = trace["spans"][0]
    assert first == {
        "traceID": "abc",
        "spanID": "0000000000000001",
        "flags": 1,
        "operationName": "op-0000000000000001",
        "references": [],
        "startTime": 1,
        "duration": 5,
        "tags": [
            {"key": "http.status_code", "type": "string", "value": "200"},
            {"key": "error", "type": "bool", "value": False},
            {"key": "n", "type": "int64", "value": 3},
            {"key": "f", "type": "float64", "value": 1.5},
            {"key": "span.kind", "type": "string", "value": "server"},
        ],
        "logs": [{"timestamp": 2, "fields": [{"key": "event", "type": "string", "value": "x"}]}],
        "processID": "p1",
        "warnings": None,
    }
    assert trace["spans"][1]["references"] == [
        {"refType": "CHILD_OF", "traceID": "abc", "spanID": "0000000000000001"},
        {"refType": "FOLLOWS_FROM", "traceID": "def", "spanID": "0000000000000009"},
    ]
    # Same service and process tags share one process.
    assert trace["spans"][2]["processID"] == "p1"
    assert trace["processes"] == {
        "p1": {
            "serviceName": "productpage.default",
            "tags": [{"key": "ip", "type": "string", "value": "10.0.0.1"}],
        },
        "p2": {"serviceName": "reviews.default", "tags": []},
    }


def test_shared_zipkin_span_ids_become_parent_and_child() -> None:
    client = span("00000000000000aa", "", "productpage.default", "client", start=1)
    server = span("00000000000000aa", "", "reviews.default", "server", start=2)
    trace = jaeger_trace([client, server])
    ids = [s["spanID"] for s in trace["spans"]]
    assert ids == ["00000000000000aa", "00000000000000ab"]
    assert trace["spans"][1]["references"][0]["spanID"] == "00000000000000aa"


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1.2s", 1_200_000),
        ("100ms", 100_000),
        ("250us", 250),
        ("250µs", 250),
        ("1500ns", 2),
        ("1m30s", 90_000_000),
        ("2h", 7_200_000_000),
        (".5s", 500_000),
        ("0", 0),
    ],
)
def test_parse_duration(text: str, micros: int) -> None:
    assert parse_duration_us(text) == micros


@pytest.mark.parametrize("text", ["", "1", "ms", "1.2", "1x", "1s2", "s1"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration_us(text)
