"""Jaeger's HTTP query API over a :class:`SpanStore`, as an aiohttp application.

Routes and shapes are Jaeger's, so its UI and tools that speak to Jaeger work unchanged::

    GET /api/services                          {"data": ["productpage.default", ...], ...}
    GET /api/services/{service}/operations     {"data": ["GET /productpage", ...], ...}
    GET /api/operations?service=&spanKind=     {"data": [{"name", "spanKind"}], ...}
    GET /api/traces?service=&operation=&tags=&start=&end=&minDuration=&maxDuration=&limit=
                   &lookback=                  {"data": [trace, ...], ...}
    GET /api/traces?traceID=a&traceID=b        those traces
    GET /api/traces/{traceID}                  {"data": [trace]} or 404
    GET /api/dependencies?endTs=&lookback=     {"data": [{"parent", "child", "callCount"}]}

Every answer is ``{"data", "total", "limit", "offset", "errors"}``; an error is
``{"data": null, ..., "errors": [{"code", "msg"}]}`` with the same HTTP status. ``start`` and
``end`` are microseconds since the epoch (``end`` defaults to now, ``start`` to ``end`` minus
``lookback``, itself 1h by default); ``minDuration`` / ``maxDuration`` / ``lookback`` are Go
durations (``1.2s``, ``100ms``, ``2h``); ``tags`` is a JSON object (``{"http.status_code":
"500"}``, as Jaeger's UI sends it) and ``tag=key:value`` may be repeated; ``limit`` defaults to
100. ``/api/dependencies`` takes milliseconds, as Jaeger's does (``lookback`` defaults to 24h).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from pilotfish.errors import StoreError
from pilotfish.telemetry.convert import jaeger_trace, parse_duration_us
from pilotfish.telemetry.model import trace_id_of
from pilotfish.telemetry.store import SpanStore, TraceQuery

DEFAULT_LIMIT = 100
DEFAULT_LOOKBACK_US = 3_600_000_000
DEFAULT_DEPENDENCY_LOOKBACK_MS = 86_400_000


class QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _answer(data: Any, *, total: int | None = None, limit: int = 0) -> web.Response:
    if total is None:
        total = len(data) if isinstance(data, list) else 0
    body = {"data": data, "total": total, "limit": limit, "offset": 0, "errors": None}
    return web.json_response(body, dumps=_dumps)


def _error(status: int, message: str) -> web.Response:
    body = {
        "data": None,
        "total": 0,
        "limit": 0,
        "offset": 0,
        "errors": [{"code": status, "msg": message}],
    }
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _int(params: Any, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise QueryError(
            400, f"unable to parse param '{name}': {raw!r} is not an integer"
        ) from None


def _duration(params: Any, name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        return parse_duration_us(raw)
    except ValueError as exc:
        raise QueryError(400, f"unable to parse param '{name}': {exc}") from None


def parse_tags(params: Any) -> dict[str, str]:
    """``tags={"k":"v"}`` (Jaeger's UI) and ``tag=k:v`` (repeatable), values as text."""
    tags: dict[str, str] = {}
    for raw in params.getall("tags", []):
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError:
            raise QueryError(400, f"malformed 'tags' parameter: {raw!r} is not JSON") from None
        if not isinstance(doc, dict):
            raise QueryError(400, "malformed 'tags' parameter: expected a JSON object")
        for key, value in doc.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            tags[str(key)] = str(value)
    for raw in params.getall("tag", []):
        key, sep, value = raw.partition(":")
        if not sep:
            raise QueryError(400, f"malformed 'tag' parameter {raw!r}: expected key:value")
        tags[key] = value
    return tags


def parse_trace_query(params: Any, now_us: int) -> TraceQuery:
    service = params.get("service")
    if not service:
        raise QueryError(400, "parameter 'service' is required")
    end = _int(params, "end") or now_us
    lookback = params.get("lookback")
    lookback_us = DEFAULT_LOOKBACK_US
    if lookback and lookback != "custom":
        if lookback.endswith("d") and lookback[:-1].isdigit():  # the UI's "2d"
            lookback_us = int(lookback[:-1]) * 86_400_000_000
        else:
            lookback_us = _duration(params, "lookback") or DEFAULT_LOOKBACK_US
    start = _int(params, "start")
    if start is None:
        start = end - lookback_us
    min_duration = _duration(params, "minDuration")
    max_duration = _duration(params, "maxDuration")
    if min_duration is not None and max_duration is not None and max_duration < min_duration:
        raise QueryError(400, "'maxDuration' should be greater than 'minDuration'")
    limit = _int(params, "limit")
    return TraceQuery(
        service=service,
        operation=params.get("operation") or None,
        tags=parse_tags(params),
        start_us=start,
        end_us=end,
        min_duration_us=min_duration,
        max_duration_us=max_duration,
        limit=limit if limit and limit > 0 else DEFAULT_LIMIT,
    )


def query_app(store: SpanStore, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The query API as an aiohttp app (store calls run in threads)."""

    def now_us() -> int:
        return int(clock() * 1_000_000)

    async def services(request: web.Request) -> web.Response:
        return _answer(await asyncio.to_thread(store.services))

    async def service_operations(request: web.Request) -> web.Response:
        service = request.match_info["service"]
        ops = await asyncio.to_thread(store.operations, service)
        return _answer(sorted({name for name, _ in ops}))

    async def operations(request: web.Request) -> web.Response:
        service = request.query.get("service")
        if not service:
            return _error(400, "parameter 'service' is required")
        kind = request.query.get("spanKind") or None
        ops = await asyncio.to_thread(store.operations, service, kind)
        return _answer([{"name": name, "spanKind": k} for name, k in ops])

    async def traces(request: web.Request) -> web.Response:
        try:
            ids = [trace_id_of(t) for t in request.query.getall("traceID", [])]
        except ValueError as exc:
            return _error(400, f"malformed 'traceID': {exc}")
        try:
            if ids:
                found = await asyncio.to_thread(store.traces, ids)
                return _answer([jaeger_trace(spans) for spans in found.values()])
            query = parse_trace_query(request.query, now_us())
        except QueryError as exc:
            return _error(exc.status, str(exc))
        trace_ids = await asyncio.to_thread(store.find_trace_ids, query)
        found = await asyncio.to_thread(store.traces, trace_ids)
        return _answer([jaeger_trace(found[t]) for t in trace_ids if t in found])

    async def trace(request: web.Request) -> web.Response:
        try:
            trace_id = trace_id_of(request.match_info["trace_id"])
        except ValueError:
            return _error(400, f"malformed trace id {request.match_info['trace_id']!r}")
        found = await asyncio.to_thread(store.traces, [trace_id])
        if trace_id not in found:
            return _error(404, "trace not found")
        return _answer([jaeger_trace(found[trace_id])])

    async def dependencies(request: web.Request) -> web.Response:
        try:
            end_ms = _int(request.query, "endTs") or now_us() // 1000
            lookback_ms = _int(request.query, "lookback") or DEFAULT_DEPENDENCY_LOOKBACK_MS
        except QueryError as exc:
            return _error(exc.status, str(exc))
        deps = await asyncio.to_thread(
            store.dependencies, (end_ms - lookback_ms) * 1000, end_ms * 1000
        )
        return _answer(
            [{"parent": d.parent, "child": d.child, "callCount": d.call_count} for d in deps]
        )

    @web.middleware
    async def store_failures(request: web.Request, handler: Any) -> web.StreamResponse:
        """A span store that fails (its database unreachable) answers Jaeger's error shape
        with the reason, as 503, instead of a bare 500."""
        try:
            response: web.StreamResponse = await handler(request)
        except (StoreError, sqlite3.Error) as exc:
            return _error(503, f"the span store failed: {exc}")
        return response

    app = web.Application(middlewares=[store_failures])
    app.router.add_get("/api/services", services)
    app.router.add_get("/api/services/{service}/operations", service_operations)
    app.router.add_get("/api/operations", operations)
    app.router.add_get("/api/traces", traces)
    app.router.add_get("/api/traces/{trace_id}", trace)
    app.router.add_get("/api/dependencies", dependencies)
    return app
