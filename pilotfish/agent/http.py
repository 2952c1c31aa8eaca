"""The agent's one HTTP stack: HTTP/1.1 on asyncio streams, framed by ``h11``.

Everything the agent says over HTTP is plain HTTP/1.1 on loopback or inside its pod: the
client asks Envoy's admin (``/ready``, ``/stats``, ``/drain_listeners``) and the app's metrics
port; the server answers Envoy's readiness listener and Prometheus on the agent port (15020).
``h11`` (the sans-I/O HTTP/1.1 state machine under httpx/httpcore) does the framing (chunked
bodies, keep-alive, malformed input); this module only moves bytes. Two full client/server
stacks (aiohttp and httpx) used to cost the agent ~25 MB and ~0.25 s of imports for that.

Client::

    response = await request("127.0.0.1", 15000, "GET", "/ready", timeout=2.0)
    response.status, response.headers["content-type"], response.text

Server::

    server = HttpServer(handler)          # async handler(method, target) -> Response
    await server.start("0.0.0.0", 15020)
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import h11

log = logging.getLogger("pilotfish.agent.http")

#: Largest body the client reads (Envoy's /stats/prometheus of a big mesh stays well below).
MAX_BODY = 64 * 1024 * 1024
_READ = 65536


class HttpError(Exception):
    """No usable answer: connection refused or reset, timeout, or a malformed response."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    #: Header names lower-cased.
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


async def request(
    host: str,
    port: int,
    method: str,
    target: str,
    *,
    timeout: float,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """One request on a fresh connection (loopback: no pool needed); raises HttpError."""
    try:
        return await asyncio.wait_for(_exchange(host, port, method, target, headers), timeout)
    except TimeoutError:
        raise HttpError(f"{method} http://{host}:{port}{target}: no answer in {timeout}s") from None
    except (OSError, h11.ProtocolError) as exc:
        raise HttpError(f"{method} http://{host}:{port}{target}: {exc}") from None


async def _exchange(
    host: str, port: int, method: str, target: str, headers: Sequence[tuple[str, str]]
) -> Response:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        conn = h11.Connection(h11.CLIENT)
        head = [("Host", f"{host}:{port}"), ("Connection", "close"), *headers]
        if method in ("POST", "PUT"):
            head.append(("Content-Length", "0"))
        writer.write(conn.send(h11.Request(method=method, target=target, headers=head)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()
        status, response_headers, body = 0, {}, bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ))
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
                response_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise HttpError(f"response larger than {MAX_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return Response(status, bytes(body), response_headers)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


Handler = Callable[[str, str], Awaitable[Response]]


class HttpServer:
    """Answers ``GET``/``HEAD`` requests with ``handler(method, target)``; keep-alive."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> None:
        """Bind and listen (raises OSError if the port is taken)."""
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)

    @property
    def port(self) -> int | None:
        if self._server is None or not self._server.sockets:
            return None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while await self._one(conn, reader, writer):
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _one(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; False when the connection is over."""
        req: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(_READ)
                conn.receive_data(data)
                if not data and req is None:
                    return False
                continue
            if isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.Request):
                req = event
            elif isinstance(event, h11.EndOfMessage):
                break
        method = req.method.decode() if req is not None else ""
        target = req.target.decode() if req is not None else "/"
        if method not in ("GET", "HEAD"):
            response = Response(405, b"method not allowed\n", {"allow": "GET, HEAD"})
        else:
            try:
                response = await self._handler(method, target)
            except Exception:
                log.exception("agent HTTP handler failed for %s %s", method, target)
                response = Response(500, b"internal error\n")
        headers = [(k, v) for k, v in response.headers.items() if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(response.body))))
        out = conn.send(h11.Response(status_code=response.status, headers=headers)) or b""
        if method != "HEAD":
            out += conn.send(h11.Data(data=response.body)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        writer.write(out)
        await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


__all__ = ["HttpError", "HttpServer", "Response", "request"]
