"""Bookinfo ``ratings``: the star ratings each reviewer gave a book, as JSON.

Stands for Istio's ``examples-bookinfo-ratings-v1`` image. Standard library only, so that the
local pod runtime can run it as ``python3 samples/bookinfo/src/ratings.py`` under any user.

Endpoints:
    GET  /ratings/{id}   ``{"id": N, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}``
    POST /ratings/{id}   replace the ratings of book ``id`` with the JSON object in the body
    GET  /health         ``{"status": "Ratings is healthy"}``

``SERVICE_VERSION`` selects a behaviour like Istio's ratings image does: ``v1`` (default) keeps
ratings in memory; ``v-faulty`` answers half of the rating requests with 503; ``v-delayed``
delays half of them by 7 s; ``v-unavailable`` answers every rating request with 503.
Also read: ``PORT`` (default 9080; 0 picks a free one), ``BIND_ADDRESS`` (default ``0.0.0.0``).
A port given as the first command-line argument wins over ``PORT``.

One line per request is written to stdout.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

SERVICE = "ratings"
DEFAULT_RATINGS: dict[str, int] = {"Reviewer1": 5, "Reviewer2": 4}
DELAY_SECONDS = 7.0


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


class RatingsStore:
    """Ratings added with POST, per book; books without any get the default ratings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._added: dict[int, dict[str, Any]] = {}

    def get(self, product_id: int) -> dict[str, Any]:
        with self._lock:
            ratings = self._added.get(product_id, DEFAULT_RATINGS)
            return {"id": product_id, "ratings": dict(ratings)}

    def put(self, product_id: int, ratings: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._added[product_id] = dict(ratings)
        return self.get(product_id)


def _product_id(path: str) -> int | None:
    try:
        return int(path.rsplit("/", 1)[1])
    except ValueError:
        return None


def handle(
    settings: Settings,
    store: RatingsStore,
    request: Request,
    coin: Callable[[], bool] = lambda: random.random() < 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Response:
    """Route one request. ``coin`` and ``sleep`` drive the faulty and delayed versions."""
    path = urlsplit(request.path).path
    if path == "/health" and request.method == "GET":
        return json_response(200, {"status": "Ratings is healthy"})
    if not path.startswith("/ratings/"):
        return json_response(404, {"error": f"{path} not found"})
    product_id = _product_id(path)
    if product_id is None:
        return json_response(400, {"error": "please provide numeric product ID"})
    if request.method == "POST":
        try:
            ratings = json.loads(request.body or b"null")
        except ValueError:
            ratings = None
        if not isinstance(ratings, dict):
            return json_response(400, {"error": "please provide valid ratings JSON"})
        return json_response(200, store.put(product_id, ratings))
    if request.method != "GET":
        return json_response(405, {"error": f"method {request.method} not allowed"})
    unavailable = json_response(503, {"error": "Service unavailable"})
    if settings.version == "v-unavailable":
        return unavailable
    if settings.version == "v-faulty" and coin():
        return unavailable
    if settings.version == "v-delayed" and coin():
        sleep(DELAY_SECONDS)
    return json_response(200, store.get(product_id))


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
    store = RatingsStore()
    server.app = lambda request: handle(settings, store, request)
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
