"""Conversions between the wire formats and the collector's :class:`Span`.

In: OTLP (``ExportTraceServiceRequest`` as protobuf or as OTLP/JSON) and Zipkin v2 JSON.
Out: Jaeger's query JSON. Also Go-style durations (``1.2s``, ``100ms``) as Jaeger's API takes
them. All pure functions; spans that cannot be read (no ids, no timestamp) are skipped and
counted, never stored half-read.

Service names follow Istio: a sidecar reports ``app.namespace``. OTLP takes ``service.name``
from the resource (completed with ``service.namespace`` / ``k8s.namespace.name`` when it has
no namespace part; ``app`` or the canonical-name label when the name is missing); Zipkin takes
``localEndpoint.serviceName``.

The installed ``opentelemetry-proto`` is checked rather than trusted: an old copy of the same
modules (shipped inside ``xds-protos``) names the span groups ``instrumentation_library_spans``
where current OTLP says ``scope_spans``. Both have the same wire layout, so both are read here,
and :func:`check_otlp_protos` decodes a request built byte by byte to prove spans come out.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from pilotfish.telemetry.model import Log, Span, TagValue, span_id_of, trace_id_of

ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportTraceServiceResponse = trace_service_pb2.ExportTraceServiceResponse

#: OTLP's SpanKind numbers, as Jaeger spells them in the ``span.kind`` tag.
_OTLP_KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_ZIPKIN_KINDS = {"CLIENT": "client", "SERVER": "server", "PRODUCER": "producer"}
_ZIPKIN_KINDS["CONSUMER"] = "consumer"
_STATUS_OK, _STATUS_ERROR = 1, 2


class OtlpProtoError(RuntimeError):
    """The installed OTLP protobuf modules cannot read spans."""


@dataclass(slots=True)
class Converted:
    spans: list[Span]
    #: Spans that could not be read and were skipped.
    rejected: int = 0


# --- OTLP -------------------------------------------------------------------------------------

_RESOURCE_SPANS_FIELDS = trace_pb2.ResourceSpans.DESCRIPTOR.fields_by_name
if "scope_spans" in _RESOURCE_SPANS_FIELDS:
    _GROUPS, _SCOPE = "scope_spans", "scope"
elif "instrumentation_library_spans" in _RESOURCE_SPANS_FIELDS:  # an old copy of the protos
    _GROUPS, _SCOPE = "instrumentation_library_spans", "instrumentation_library"
else:  # pragma: no cover - no known layout
    _GROUPS, _SCOPE = "scope_spans", "scope"


def any_value(value: common_pb2.AnyValue) -> TagValue:
    which = value.WhichOneof("value")
    if which is None:
        return ""
    if which in ("string_value", "bool_value", "int_value", "double_value"):
        result: TagValue = getattr(value, which)
        return result
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return json.dumps(_plain(value), separators=(",", ":"))


def _plain(value: common_pb2.AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return any_value(value)


def attributes(items: Iterable[common_pb2.KeyValue]) -> dict[str, TagValue]:
    return {kv.key: any_value(kv.value) for kv in items}


def otlp_service_name(resource: Mapping[str, TagValue]) -> str:
    """Istio's ``app.namespace`` from OTLP resource attributes."""
    name = str(resource.get("service.name") or "")
    if not name or name.startswith("unknown_service"):
        app = resource.get("app") or resource.get("service.istio.io/canonical-name")
        name = str(app or name or "unknown")
    namespace = resource.get("service.namespace") or resource.get("k8s.namespace.name")
    if namespace and "." not in name:
        name = f"{name}.{namespace}"
    return name


def spans_from_otlp(request: ExportTraceServiceRequest) -> Converted:
    out = Converted([])
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        service = otlp_service_name(resource)
        process_tags = {k: v for k, v in resource.items() if k != "service.name"}
        for group in getattr(resource_spans, _GROUPS):
            scope = getattr(group, _SCOPE)
            for span in group.spans:
                try:
                    out.spans.append(_otlp_span(span, service, process_tags, scope))
                except ValueError:
                    out.rejected += 1
    return out


def _otlp_span(
    span: trace_pb2.Span, service: str, process_tags: dict[str, TagValue], scope: Any
) -> Span:
    start_ns, end_ns = span.start_time_unix_nano, span.end_time_unix_nano
    if not start_ns:
        raise ValueError("span without a start time")
    tags = attributes(span.attributes)
    if scope.name:
        tags["otel.scope.name"] = scope.name
        if scope.version:
            tags["otel.scope.version"] = scope.version
    code = span.status.code
    if code == _STATUS_ERROR:
        tags["otel.status_code"] = "ERROR"
        tags["error"] = True
        if span.status.message:
            tags["otel.status_description"] = span.status.message
    elif code == _STATUS_OK:
        tags["otel.status_code"] = "OK"
    if span.trace_state:
        tags["w3c.tracestate"] = span.trace_state
    logs = []
    for event in span.events:
        fields: dict[str, TagValue] = {"event": event.name}
        fields.update(attributes(event.attributes))
        logs.append(Log(event.time_unix_nano // 1000, fields))
    links = []
    for link in span.links:
        try:
            links.append((trace_id_of(link.trace_id), span_id_of(link.span_id)))
        except ValueError:
            continue
    return Span(
        trace_id=trace_id_of(span.trace_id),
        span_id=span_id_of(span.span_id),
        parent_id=span_id_of(span.parent_span_id) if any(span.parent_span_id) else "",
        service=service,
        operation=span.name,
        start_us=start_ns // 1000,
        duration_us=max(0, end_ns - start_ns) // 1000,
        kind=_OTLP_KINDS.get(span.kind, ""),
        tags=tags,
        process_tags=process_tags,
        logs=logs,
        links=links,
    )


def otlp_request_from_json(body: bytes | str) -> ExportTraceServiceRequest:
    """Parse OTLP/JSON. Its ids are hex (not protobuf JSON's base64), so they are rewritten
    before the generic parser runs. ValueError for a body that is not OTLP/JSON."""
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("an OTLP/JSON body is an object")
    for resource_spans in _list(doc, "resourceSpans", "resource_spans"):
        groups = _list(resource_spans, "scopeSpans", "scope_spans")
        for group in groups:
            for span in _list(group, "spans"):
                _hex_ids_to_base64(span, ("traceId", "spanId", "parentSpanId"))
                _hex_ids_to_base64(span, ("trace_id", "span_id", "parent_span_id"))
                for link in _list(span, "links"):
                    _hex_ids_to_base64(link, ("traceId", "spanId", "trace_id", "span_id"))
        if _GROUPS != "scope_spans":  # the old protos: same data under the old names
            resource_spans.pop("scope_spans", None)
            resource_spans["instrumentationLibrarySpans"] = groups
            resource_spans.pop("scopeSpans", None)
            for group in groups:
                if isinstance(group, dict) and "scope" in group:
                    group["instrumentationLibrary"] = group.pop("scope")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(str(exc)) from None
    return request


def _list(doc: Any, *names: str) -> list[Any]:
    if not isinstance(doc, dict):
        return []
    for name in names:
        value = doc.get(name)
        if isinstance(value, list):
            return value
    return []


def _hex_ids_to_base64(doc: Any, names: tuple[str, ...]) -> None:
    if not isinstance(doc, dict):
        return
    for name in names:
        value = doc.get(name)
        if (
            isinstance(value, str)
            and value
            and len(value) % 2 == 0
            and not value.strip("0123456789abcdefABCDEF")
        ):
            doc[name] = base64.b64encode(bytes.fromhex(value)).decode()


def check_otlp_protos() -> None:
    """Raise OtlpProtoError unless the installed protos read a span out of an OTLP request.

    The request is written byte by byte here (not with the installed classes), as Envoy and
    current SDKs put it on the wire: resource_spans(1) > scope_spans(2) > spans(2)."""

    def field(number: int, payload: bytes) -> bytes:
        return _varint(number << 3 | 2) + _varint(len(payload)) + payload

    def fixed64(number: int, value: int) -> bytes:
        return _varint(number << 3 | 1) + value.to_bytes(8, "little")

    span = (
        field(1, bytes(range(1, 17)))
        + field(2, bytes(range(1, 9)))
        + field(5, b"probe")
        + fixed64(7, 1_000_000_000)
        + fixed64(8, 2_000_000_000)
    )
    wire = field(1, field(2, field(2, span)))
    converted = spans_from_otlp(ExportTraceServiceRequest.FromString(wire))
    if [s.operation for s in converted.spans] != ["probe"]:
        raise OtlpProtoError(
            "the installed opentelemetry-proto modules drop OTLP spans (an old copy, e.g. from "
            "xds-protos, overwrote them); reinstall with "
            "`pip install --force-reinstall --no-deps opentelemetry-proto`"
        )


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def otlp_response(rejected: int, message: str = "") -> ExportTraceServiceResponse:
    response = ExportTraceServiceResponse()
    if rejected and "partial_success" in response.DESCRIPTOR.fields_by_name:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    return response


def message_to_json(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message)
    return result


# --- Zipkin v2 --------------------------------------------------------------------------------


def spans_from_zipkin(doc: Any) -> Converted:
    """Zipkin v2 JSON (a list of spans). ValueError if ``doc`` is not a list."""
    if not isinstance(doc, list):
        raise ValueError("a Zipkin v2 body is a JSON list of spans")
    out = Converted([])
    for item in doc:
        try:
            out.spans.append(_zipkin_span(item))
        except (KeyError, ValueError, TypeError, AttributeError):
            out.rejected += 1
    return out


def _zipkin_span(z: dict[str, Any]) -> Span:
    timestamp = z.get("timestamp")
    if not isinstance(timestamp, int | float) or timestamp <= 0:
        raise ValueError("span without a timestamp")
    local = z.get("localEndpoint") or {}
    process_tags: dict[str, TagValue] = {}
    for key in ("ipv4", "ipv6"):
        if local.get(key):
            process_tags["ip"] = str(local[key])
            break
    tags: dict[str, TagValue] = {str(k): str(v) for k, v in (z.get("tags") or {}).items()}
    if "error" in tags:
        message = str(tags["error"])
        tags["error"] = True
        if message and message.lower() != "true":
            tags["error.message"] = message
    remote = z.get("remoteEndpoint") or {}
    for key, tag in (
        ("serviceName", "peer.service"),
        ("ipv4", "peer.ipv4"),
        ("ipv6", "peer.ipv6"),
        ("port", "peer.port"),
    ):
        if remote.get(key):
            tags[tag] = remote[key] if key == "port" else str(remote[key])
    logs = [
        Log(int(a["timestamp"]), {"event": str(a.get("value", ""))})
        for a in z.get("annotations") or []
        if isinstance(a, dict) and isinstance(a.get("timestamp"), int | float)
    ]
    parent = z.get("parentId")
    return Span(
        trace_id=trace_id_of(str(z["traceId"])),
        span_id=span_id_of(str(z["id"])),
        parent_id=span_id_of(str(parent)) if parent else "",
        service=str(local.get("serviceName") or "unknown"),
        operation=str(z.get("name") or ""),
        start_us=int(timestamp),
        duration_us=int(z.get("duration") or 0),
        kind=_ZIPKIN_KINDS.get(str(z.get("kind") or "").upper(), ""),
        tags=tags,
        process_tags=process_tags,
        logs=logs,
    )


# --- Jaeger's query JSON ----------------------------------------------------------------------


def tag_json(key: str, value: TagValue) -> dict[str, Any]:
    if isinstance(value, bool):
        kind = "bool"
    elif isinstance(value, int):
        kind = "int64"
    elif isinstance(value, float):
        kind = "float64"
    else:
        kind = "string"
    return {"key": key, "type": kind, "value": value}


def dedupe_span_ids(spans: list[Span]) -> list[Span]:
    """Zipkin's shared spans (a client and a server span with one id, as Envoy's Zipkin tracer
    sends by default) get distinct ids, the server span becoming the client span's child, as
    Jaeger's query service presents them. Returns new Span objects where ids change."""
    by_id: dict[str, list[Span]] = {}
    for span in spans:
        by_id.setdefault(span.span_id, []).append(span)
    if all(len(group) == 1 for group in by_id.values()):
        return spans
    taken = set(by_id)
    renamed: dict[int, Span] = {}
    for span_id, group in by_id.items():
        if len(group) < 2 or not any(s.kind == "client" for s in group):
            continue
        for span in group:
            if span.kind != "server":
                continue
            value = int(span_id, 16)
            new_id = span_id
            while new_id in taken:
                value = (value + 1) % (1 << 64) or 1
                new_id = f"{value:016x}"
            taken.add(new_id)
            renamed[id(span)] = _replace_ids(span, new_id, span_id)
    return [renamed.get(id(s), s) for s in spans]


def _replace_ids(span: Span, span_id: str, parent_id: str) -> Span:
    return Span(
        span.trace_id,
        span_id,
        parent_id,
        span.service,
        span.operation,
        span.start_us,
        span.duration_us,
        span.kind,
        span.tags,
        span.process_tags,
        span.logs,
        span.links,
    )


def jaeger_trace(spans: list[Span]) -> dict[str, Any]:
    """One trace in Jaeger's query JSON (``{"traceID", "spans", "processes", "warnings"}``)."""
    spans = sorted(dedupe_span_ids(spans), key=lambda s: (s.start_us, s.span_id))
    processes: dict[tuple[str, str], str] = {}
    process_json: dict[str, Any] = {}
    out = []
    for span in spans:
        ptags = json.dumps(span.process_tags, sort_keys=True)
        pid = processes.get((span.service, ptags))
        if pid is None:
            pid = processes[(span.service, ptags)] = f"p{len(processes) + 1}"
            process_json[pid] = {
                "serviceName": span.service,
                "tags": [tag_json(k, v) for k, v in sorted(span.process_tags.items())],
            }
        references = []
        if span.parent_id:
            references.append(
                {"refType": "CHILD_OF", "traceID": span.trace_id, "spanID": span.parent_id}
            )
        references += [
            {"refType": "FOLLOWS_FROM", "traceID": t, "spanID": s} for t, s in span.links
        ]
        tags = [tag_json(k, v) for k, v in span.tags.items()]
        if span.kind and "span.kind" not in span.tags:
            tags.append(tag_json("span.kind", span.kind))
        out.append(
            {
                "traceID": span.trace_id,
                "spanID": span.span_id,
                "flags": 1,
                "operationName": span.operation,
                "references": references,
                "startTime": span.start_us,
                "duration": span.duration_us,
                "tags": tags,
                "logs": [
                    {
                        "timestamp": log.timestamp_us,
                        "fields": [tag_json(k, v) for k, v in log.fields.items()],
                    }
                    for log in span.logs
                ],
                "processID": pid,
                "warnings": None,
            }
        )
    return {
        "traceID": spans[0].trace_id if spans else "",
        "spans": out,
        "processes": process_json,
        "warnings": None,
    }


# --- durations --------------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_US = {"ns": 0.001, "us": 1, "µs": 1, "μs": 1, "ms": 1_000, "s": 1_000_000}
_UNIT_US |= {"m": 60_000_000, "h": 3_600_000_000}


def parse_duration_us(text: str) -> int:
    """A Go duration (``1.2s``, ``100ms``, ``1h30m``, ``250us``) in microseconds, as Jaeger's
    ``minDuration`` / ``maxDuration`` / ``lookback`` take it. ValueError otherwise."""
    value = text.strip()
    sign = 1
    if value[:1] in "+-" and value:
        sign = -1 if value[0] == "-" else 1
        value = value[1:]
    if value == "0":
        return 0
    total, pos = 0.0, 0
    while pos < len(value):
        match = _DURATION_PART.match(value, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r} (use e.g. 1.2s, 100ms, 1h30m)")
        total += float(match.group(1)) * _UNIT_US[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError(f"invalid duration {text!r} (use e.g. 1.2s, 100ms, 1h30m)")
    return sign * round(total)
