"""The trace collector: OTLP gRPC, OTLP HTTP and Zipkin receivers, a span store with
retention, and Jaeger's query API, in one asyncio object the control plane embeds.

See :mod:`pilotfish.telemetry` for how to embed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from pilotfish.telemetry.convert import (
    Converted,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    check_otlp_protos,
    message_to_json,
    otlp_request_from_json,
    otlp_response,
    spans_from_otlp,
    spans_from_zipkin,
)
from pilotfish.telemetry.query import query_app
from pilotfish.telemetry.store import DEFAULT_FILENAME, SpanStore, open_span_store

log = logging.getLogger("pilotfish.telemetry")

OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
ZIPKIN_PORT = 9411
QUERY_PORT = 16686
DEFAULT_MAX_AGE = 72 * 3600.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
MAX_REQUEST_BYTES = 16 * 1024 * 1024
TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_PROTOBUF = "application/x-protobuf"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class CollectorSettings:
    """Where the collector listens and keeps spans. A port of ``None`` turns that part off;
    ``0`` lets the kernel pick (see :attr:`TraceCollector.ports`)."""

    #: The data directory; spans go to ``<data_dir>/traces.db`` unless ``store_url`` says.
    data_dir: Path
    #: The receivers' bind address: the pod bridge address in the local mesh, the xDS listen
    #: address otherwise.
    host: str = "127.0.0.1"
    otlp_grpc_port: int | None = OTLP_GRPC_PORT
    otlp_http_port: int | None = OTLP_HTTP_PORT
    zipkin_port: int | None = ZIPKIN_PORT
    #: Jaeger's query API; it has no authentication, so it binds to loopback only.
    query_port: int | None = QUERY_PORT
    query_host: str = "127.0.0.1"
    #: ``sqlite:///path/traces.db``, a path, or ``postgresql://`` (the replicas' shared
    #: database, see :mod:`pilotfish.telemetry.postgres`); None: ``<data_dir>/traces.db``.
    store_url: str | None = None
    #: Spans that started longer ago than this (seconds) are deleted.
    max_age: float = DEFAULT_MAX_AGE
    #: The stored spans' size limit (bytes); the oldest arrivals go first.
    max_bytes: int = DEFAULT_MAX_BYTES
    #: How often retention runs (seconds).
    retention_interval: float = 60.0

    def __post_init__(self) -> None:
        if not _is_loopback(self.query_host):
            raise ValueError(f"the trace query API binds to loopback only, not {self.query_host!r}")
        if self.max_age <= 0 or self.max_bytes <= 0 or self.retention_interval <= 0:
            raise ValueError("max_age, max_bytes and retention_interval must be positive")

    @property
    def store_location(self) -> str:
        return self.store_url or str(self.data_dir / DEFAULT_FILENAME)


@dataclass
class CollectorStats:
    spans_stored: int = 0
    spans_rejected: int = 0
    write_errors: int = 0
    retention_deleted: int = 0


@dataclass
class _Listeners:
    grpc_server: grpc.aio.Server | None = None
    runners: list[web.AppRunner] = field(default_factory=list)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TraceCollector:
    """Receives spans (OTLP gRPC/HTTP, Zipkin), stores them, answers Jaeger's query API.

    ``await start()`` binds every enabled port (raising OSError if one is taken, after
    closing what it opened) and starts retention; ``await stop()`` closes them and the store.
    ``store``: a backend to use instead of opening ``settings.store_location``."""

    def __init__(self, settings: CollectorSettings, *, store: SpanStore | None = None) -> None:
        self.settings = settings
        self._store = store
        self._owns_store = store is None
        self._listeners = _Listeners()
        self._retention: asyncio.Task[None] | None = None
        #: The bound ports by name (``otlp_grpc``, ``otlp_http``, ``zipkin``, ``query``).
        self.ports: dict[str, int] = {}
        self.stats = CollectorStats()

    @property
    def store(self) -> SpanStore:
        if self._store is None:
            raise RuntimeError("the trace collector is not started")
        return self._store

    async def start(self) -> None:
        check_otlp_protos()
        s = self.settings
        if self._store is None:
            self._store = await asyncio.to_thread(open_span_store, s.store_location)
        try:
            if s.otlp_grpc_port is not None:
                self.ports["otlp_grpc"] = await self._start_grpc(s.host, s.otlp_grpc_port)
            if s.otlp_http_port is not None:
                self.ports["otlp_http"] = await self._serve(
                    self._otlp_http_app(), s.host, s.otlp_http_port
                )
            if s.zipkin_port is not None:
                self.ports["zipkin"] = await self._serve(self._zipkin_app(), s.host, s.zipkin_port)
            if s.query_port is not None:
                app = query_app(self.store)
                self.ports["query"] = await self._serve(app, s.query_host, s.query_port)
        except BaseException:
            await self.stop()
            raise
        self._retention = asyncio.create_task(self._retention_loop(), name="trace-retention")
        log.info("trace collector listening: %s", self.ports)

    async def stop(self) -> None:
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
            self._retention = None
        if self._listeners.grpc_server is not None:
            await self._listeners.grpc_server.stop(grace=1.0)
            self._listeners.grpc_server = None
        for runner in self._listeners.runners:
            await runner.cleanup()
        self._listeners.runners.clear()
        if self._store is not None and self._owns_store:
            await asyncio.to_thread(self._store.close)
            self._store = None
        self.ports.clear()

    async def enforce_retention(self) -> int:
        """Apply the age and size limits now; returns how many spans were deleted."""
        s = self.settings
        min_start_us = int((time.time() - s.max_age) * 1_000_000)
        result = await asyncio.to_thread(
            self.store.enforce_retention, min_start_us=min_start_us, max_bytes=s.max_bytes
        )
        self.stats.retention_deleted += result.deleted
        if result.deleted:
            log.info(
                "trace retention deleted %d spans; %d bytes stored",
                result.deleted,
                result.stored_bytes,
            )
        return result.deleted

    async def _retention_loop(self) -> None:
        while True:
            try:
                await self.enforce_retention()
            except Exception:
                log.exception("trace retention failed")
            await asyncio.sleep(self.settings.retention_interval)

    async def accept(self, converted: Converted) -> None:
        """Store what a receiver read (the receivers' common path)."""
        self.stats.spans_rejected += converted.rejected
        if not converted.spans:
            return
        try:
            await asyncio.to_thread(self.store.write, converted.spans)
        except Exception:
            self.stats.write_errors += 1
            log.exception("storing %d spans failed", len(converted.spans))
            raise
        self.stats.spans_stored += len(converted.spans)

    # --- receivers ----------------------------------------------------------------------------

    async def _start_grpc(self, host: str, port: int) -> int:
        async def export(
            request: ExportTraceServiceRequest, context: grpc.aio.ServicerContext[Any, Any]
        ) -> ExportTraceServiceResponse:
            converted = spans_from_otlp(request)
            try:
                await self.accept(converted)
            except Exception:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the span store failed")
            return otlp_response(converted.rejected, "spans without ids or start time")

        handler = grpc.unary_unary_rpc_method_handler(
            export,
            request_deserializer=ExportTraceServiceRequest.FromString,
            response_serializer=ExportTraceServiceResponse.SerializeToString,
        )
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_REQUEST_BYTES)])
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(TRACE_SERVICE, {"Export": handler}),)
        )
        self._listeners.grpc_server = server
        bound = server.add_insecure_port(_hostport(host, port))
        if not bound:
            raise OSError(f"cannot listen for OTLP gRPC on {_hostport(host, port)}")
        await server.start()
        return bound

    async def _serve(self, app: web.Application, host: str, port: int) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._listeners.runners.append(runner)
        site = web.TCPSite(runner, host, port)
        await site.start()
        addresses = runner.addresses
        return int(addresses[0][1]) if addresses else port

    def _otlp_http_app(self) -> web.Application:
        async def traces(request: web.Request) -> web.Response:
            body = await request.read()
            is_json = request.content_type == "application/json"
            try:
                if is_json:
                    message = otlp_request_from_json(body)
                elif request.content_type in (_PROTOBUF, "application/protobuf"):
                    message = ExportTraceServiceRequest.FromString(body)
                else:
                    return web.Response(
                        status=415, text="use application/x-protobuf or application/json"
                    )
            except Exception as exc:  # a malformed body, whatever the parser raised
                return web.Response(status=400, text=f"malformed OTLP request: {exc}")
            converted = spans_from_otlp(message)
            try:
                await self.accept(converted)
            except Exception:
                return web.Response(status=503, text="the span store failed")
            response = otlp_response(converted.rejected, "spans without ids or start time")
            if is_json:
                return web.json_response(message_to_json(response))
            return web.Response(body=response.SerializeToString(), content_type=_PROTOBUF)

        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/traces", traces)
        return app

    def _zipkin_app(self) -> web.Application:
        async def spans(request: web.Request) -> web.Response:
            if request.content_type not in ("application/json", "", "text/plain"):
                return web.Response(status=415, text="this receiver takes Zipkin v2 JSON")
            try:
                converted = spans_from_zipkin(json.loads(await request.read()))
            except ValueError as exc:
                return web.Response(status=400, text=f"malformed Zipkin v2 spans: {exc}")
            try:
                await self.accept(converted)
            except Exception:
                return web.Response(status=503, text="the span store failed")
            return web.Response(status=202)

        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/api/v2/spans", spans)
        return app
