"""Bookinfo ``details``: the book's publishing details as JSON.

Stands for Istio's ``examples-bookinfo-details-v1`` image. Standard library only, so that the
local pod runtime can run it as ``python3 samples/bookinfo/src/details.py`` under any user.

Endpoints:
    GET /details/{id}   the details of book ``id`` (400 when ``id`` is not a number)
    GET /health         ``{"status": "Details is healthy"}``

Environment: ``PORT`` (default 9080; 0 picks a free one), ``BIND_ADDRESS`` (default
``0.0.0.0``), ``SERVICE_VERSION`` (shown in the log, default ``v1``). A port given as the first
command-line argument wins over ``PORT``, as with Istio's images.

One line per request is written to stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

SERVICE = "details"


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, read once in ``main``."""

    port: int = 9080
    bind: str = "0.0.0.0"
    version: str = "v1"

    @classmethod
    def from_env(cls, env: Mapping[str, str], argv: list[str] | None = None) -> Settings:
        port = argv[1] if argv and len(argv) > 1 else env.get("PORT", "9080")
        return cls(
            port=int(port),
            bind=env.get("BIND_ADDRESS", "0.0.0.0"),
            version=env.get("SERVICE_VERSION", "v1"),
        )


# --- pure part: request in, response out ----------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names in lower case
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())


def book_details(product_id: int) -> dict[str, Any]:
    """The details Istio's details service returns for every book."""
    return {
        "id": product_id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }


def handle(settings: Settings, request: Request) -> Response:
    """Route one request."""
    path = urlsplit(request.path).path
    if request.method != "GET":
        return json_response(405, {"error": f"method {request.method} not allowed"})
    if path == "/health":
        return json_response(200, {"status": "Details is healthy"})
    if path.startswith("/details/"):
        raw_id = path.rsplit("/", 1)[1]
        try:
            product_id = int(raw_id)
        except ValueError:
            return json_response(400, {"error": "please provide numeric product id"})
        return json_response(200, book_details(product_id))
    return json_response(404, {"error": f"{path} not found"})


# --- I/O edge: the HTTP server --------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: Callable[[Request], Response]
    label: str


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"bookinfo-{SERVICE}"

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        start = time.monotonic()
        server = cast(_Server, self.server)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, self.path, headers, body)
        try:
            response = server.app(request)
        except Exception as exc:  # a bug must not kill the connection silently
            response = json_response(500, {"error": f"internal error: {exc}"})
        elapsed_ms = (time.monotonic() - start) * 1000
        # Logged before answering, so the line is there once the caller has the answer.
        print(
            f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {server.label}"
            f' "{self.command} {self.path}" {response.status} {elapsed_ms:.1f}ms'
            f" end-user={headers.get('end-user', '-')}"
            f" x-request-id={headers.get('x-request-id', '-')}",
            flush=True,
        )
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # _serve logs one line per request itself

    def log_message(self, format: str, *args: Any) -> None:
        print(f"{SERVICE}: {format % args}", flush=True)


def serve(settings: Settings) -> None:
    server = _Server((settings.bind, settings.port), _Handler)
    server.app = lambda request: handle(settings, request)
    server.label = f"{SERVICE}-{settings.version}"
    host, port = server.server_address[:2]
    print(f"{server.label} listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    serve(Settings.from_env(os.environ, sys.argv))


if __name__ == "__main__":
    main()
