"""The collector's own span: what every receiver produces, the store keeps and the query API
returns (as Jaeger's JSON). Times are microseconds since the epoch, as Jaeger counts them."""

from __future__ import annotations

from dataclasses import dataclass, field

#: A tag's value: Jaeger's ``string``, ``bool``, ``int64`` or ``float64``.
TagValue = str | bool | int | float

_TRACE_ID_MAX = 1 << 128
_SPAN_ID_MAX = 1 << 64
_HEX = "0123456789abcdefABCDEF"


@dataclass(slots=True)
class Log:
    """A timestamped event on a span (an OTLP event, a Zipkin annotation)."""

    timestamp_us: int
    fields: dict[str, TagValue]


@dataclass(slots=True)
class Span:
    trace_id: str
    span_id: str
    #: The parent's span id; "" for a root span.
    parent_id: str
    #: Istio's service name, ``app.namespace``.
    service: str
    operation: str
    start_us: int
    duration_us: int
    #: ``client``, ``server``, ``producer``, ``consumer``, ``internal`` or "" when unknown.
    kind: str = ""
    tags: dict[str, TagValue] = field(default_factory=dict)
    #: The reporting process's tags (OTLP resource attributes, Zipkin's endpoint address).
    process_tags: dict[str, TagValue] = field(default_factory=dict)
    logs: list[Log] = field(default_factory=list)
    #: ``(trace_id, span_id)`` of spans this one follows from (OTLP links).
    links: list[tuple[str, str]] = field(default_factory=list)


def trace_id_of(raw: str | bytes) -> str:
    """A trace id in Jaeger's spelling: lower-case hex, 16 digits when the id fits in 64 bits,
    32 otherwise (so a Zipkin 64-bit id and the same id padded to 128 bits are one trace).
    ValueError for an empty, all-zero or malformed id."""
    value = _id_value(raw, _TRACE_ID_MAX)
    return f"{value:016x}" if value < _SPAN_ID_MAX else f"{value:032x}"


def span_id_of(raw: str | bytes) -> str:
    """A span id as 16 lower-case hex digits. ValueError for an empty, zero or bad id."""
    return f"{_id_value(raw, _SPAN_ID_MAX):016x}"


def _id_value(raw: str | bytes, limit: int) -> int:
    if isinstance(raw, bytes):
        if not raw:
            raise ValueError("empty id")
        value = int.from_bytes(raw, "big")
    else:
        text = raw.strip()
        if not text or len(text) > 32 or text.strip(_HEX):
            raise ValueError(f"bad id {raw!r}")
        value = int(text, 16)
    if value == 0 or value >= limit:
        raise ValueError(f"bad id {raw!r}")
    return value
