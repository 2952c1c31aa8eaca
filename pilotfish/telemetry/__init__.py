"""The built-in trace collector the control plane embeds.

It receives spans from Envoy's tracers and from applications on the standard ports, keeps
them in the data directory, and answers Jaeger's query API, so Jaeger's UI and tools that
speak to Jaeger work against it:

=====================  ======  ==========================================================
OTLP gRPC              4317    ``opentelemetry.proto.collector.trace.v1.TraceService/Export``
OTLP HTTP              4318    ``POST /v1/traces`` (``application/x-protobuf`` or JSON)
Zipkin v2 JSON         9411    ``POST /api/v2/spans``
Jaeger query API       16686   ``/api/services``, ``/api/traces``, ... (loopback only)
=====================  ======  ==========================================================

Embedding (in the control plane's asyncio loop)::

    from pilotfish.telemetry import CollectorSettings, TraceCollector

    collector = TraceCollector(CollectorSettings(data_dir=data_dir, host=bridge_ip))
    await collector.start()      # binds every port or raises OSError; starts retention
    ...
    await collector.stop()       # closes the ports and the span store

A port set to ``None`` in :class:`CollectorSettings` turns that part off; ``0`` lets the
kernel pick and :attr:`TraceCollector.ports` tells which. Spans go to
``<data_dir>/traces.db`` (SQLite, WAL) unless ``store_url`` names another file or a
PostgreSQL database (``postgresql://``: schema ``pilotfish_traces``, shared by control-plane
replicas), or a :class:`SpanStore` is passed as ``store=``. Retention deletes spans older
than ``max_age`` (72 h) and the oldest arrivals beyond ``max_bytes`` (512 MiB), every
``retention_interval`` (60 s). Service names follow Istio's ``app.namespace``.
"""

from typing import TYPE_CHECKING

from pilotfish.lazy import lazy_exports

if TYPE_CHECKING:
    from pilotfish.telemetry.collector import CollectorSettings, CollectorStats, TraceCollector
    from pilotfish.telemetry.model import Span
    from pilotfish.telemetry.store import SpanStore, SqliteSpanStore, TraceQuery, open_span_store

#: Imported on first use: the sidecar agent reads ``telemetry.promtext`` alone and must not
#: load the collector, its receivers and its span store.
_WHERE = {
    "CollectorSettings": "collector",
    "CollectorStats": "collector",
    "TraceCollector": "collector",
    "Span": "model",
    "SpanStore": "store",
    "SqliteSpanStore": "store",
    "TraceQuery": "store",
    "open_span_store": "store",
}

__getattr__ = lazy_exports(__name__, _WHERE)

__all__ = [
    "CollectorSettings",
    "CollectorStats",
    "Span",
    "SpanStore",
    "SqliteSpanStore",
    "TraceCollector",
    "TraceQuery",
    "open_span_store",
]
