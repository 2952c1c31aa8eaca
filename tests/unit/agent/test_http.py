"""The agent's HTTP stack (h11 on asyncio streams), client and server, on loopback."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pilotfish.agent.http import HttpError, HttpServer, Response, request


async def _handler(method: str, target: str) -> Response:
    if target.startswith("/missing"):
        return Response(404, b"nope\n")
    return Response(200, f"{method} {target}\n".encode(), {"content-type": "text/plain"})


async def test_the_client_reads_what_the_server_answers() -> None:
    server = HttpServer(_handler)
    await server.start("127.0.0.1", 0)
    try:
        assert server.port
        got = await request("127.0.0.1", server.port, "GET", "/stats?filter=a%20b", timeout=2)
        assert (got.status, got.text) == (200, "GET /stats?filter=a%20b\n")
        assert got.headers["content-type"] == "text/plain"
        missing = await request("127.0.0.1", server.port, "GET", "/missing", timeout=2)
        assert (missing.status, missing.body) == (404, b"nope\n")
        refused = await request("127.0.0.1", server.port, "POST", "/x", timeout=2)
        assert refused.status == 405
    finally:
        await server.stop()


async def test_the_server_keeps_a_connection_alive_for_several_requests() -> None:
    server = HttpServer(_handler)
    await server.start("127.0.0.1", 0)
    try:
        assert server.port
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for path in ("/a", "/b"):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            assert await reader.readexactly(length) == f"GET {path}\n".encode()
        writer.close()
        await writer.wait_closed()
    finally:
        await server.stop()


async def test_the_client_reads_a_chunked_body() -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(chunked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        got = await request("127.0.0.1", port, "GET", "/", timeout=2)
        assert (got.status, got.text) == (200, "hello world")
    finally:
        server.close()
        await server.wait_closed()


async def test_the_client_raises_http_error_when_nothing_listens() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HttpError):
        await request("127.0.0.1", port, "GET", "/ready", timeout=2)
