"""Bookinfo ``reviews``: two reviews of a book, with star ratings from ``ratings`` (v2, v3).

Stands for Istio's ``examples-bookinfo-reviews-v1/v2/v3`` images. Standard library only, so that
the local pod runtime can run it as ``python3 samples/bookinfo/src/reviews.py`` under any user.

Endpoints:
    GET /reviews/{id}   ``{"id": "0", "podname": ..., "clustername": ..., "reviews": [...]}``
    GET /health         ``{"status": "Reviews is healthy"}``

Versions, as in Istio's sample:
    v1  no ratings (does not call ``ratings``)
    v2  calls ``ratings`` with a 10 s timeout, black stars
    v3  calls ``ratings`` with a 2.5 s timeout, red stars
When ``ratings`` does not answer with 200, each review carries
``"rating": {"error": "Ratings service is currently unavailable"}``.

Environment: ``SERVICE_VERSION`` (v1, v2, v3; default v1), ``STAR_COLOR`` (default black for v2,
red for v3; the timeout follows the colour like Istio's app: 10 s for black, 2.5 s otherwise),
``ENABLE_RATINGS`` (true/false, overrides what the version implies), ``RATINGS_URL`` (default
``http://ratings:9080``; or ``RATINGS_HOSTNAME`` and ``SERVICES_DOMAIN`` as in Istio's app),
``HOSTNAME`` (reported as ``podname``), ``CLUSTER_NAME`` (reported as ``clustername``, "null"
when unset), ``PORT`` (default 9080; 0 picks a free one), ``BIND_ADDRESS`` (default ``0.0.0.0``).
A port given as the first command-line argument wins over ``PORT``.

The trace headers Istio lists and ``end-user`` are copied from the incoming request to the call
to ``ratings``. Calls go straight to the service name: environment proxy settings are ignored,
the mesh sidecar captures the traffic. One line per request is written to stdout.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import quote, urlsplit

SERVICE = "reviews"

#: Headers copied from the incoming request to outgoing calls (Istio's list for its apps).
PROPAGATED_HEADERS: tuple[str, ...] = (
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "sw8",
    "end-user",
    "user-agent",
)

REVIEWS: tuple[tuple[str, str], ...] = (
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other"
        " plays by Shakespeare.",
    ),
)
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


# --- settings -------------------------------------------------------------------------------


def _service_url(env: Mapping[str, str], name: str) -> str:
    """``<NAME>_URL``, else Istio's ``<NAME>_HOSTNAME`` + ``SERVICES_DOMAIN`` on port 9080."""
    explicit = env.get(f"{name.upper()}_URL")
    if explicit:
        return explicit.rstrip("/")
    host = env.get(f"{name.upper()}_HOSTNAME") or name
    domain = env.get("SERVICES_DOMAIN")
    return f"http://{host}{'.' + domain if domain else ''}:9080"


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment, read once in ``main``."""

    port: int = 9080
    bind: str = "0.0.0.0"
    version: str = "v1"
    ratings_enabled: bool = False
    star_color: str = "black"
    ratings_url: str = "http://ratings:9080"
    podname: str = ""
    clustername: str = "null"

    @property
    def ratings_timeout(self) -> float:
        return 10.0 if self.star_color == "black" else 2.5

    @classmethod
    def from_env(cls, env: Mapping[str, str], argv: list[str] | None = None) -> Settings:
        port = argv[1] if argv and len(argv) > 1 else env.get("PORT", "9080")
        version = env.get("SERVICE_VERSION", "v1")
        enable = env.get("ENABLE_RATINGS")
        ratings_enabled = version != "v1" if enable is None else enable.lower() == "true"
        color = env.get("STAR_COLOR") or ("red" if version == "v3" else "black")
        return cls(
            port=int(port),
            bind=env.get("BIND_ADDRESS", "0.0.0.0"),
            version=version,
            ratings_enabled=ratings_enabled,
            star_color=color,
            ratings_url=_service_url(env, "ratings"),
            podname=env.get("HOSTNAME") or socket.gethostname(),
            clustername=env.get("CLUSTER_NAME") or "null",
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


#: GET ``url`` with ``headers`` and a timeout; returns (status, parsed JSON or None), status 0
#: when no HTTP answer came at all.
Fetch = Callable[[str, Mapping[str, str], float], tuple[int, Any]]


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())


def forward_headers(incoming: Mapping[str, str]) -> dict[str, str]:
    """The headers of ``incoming`` (lower-case names) to copy to outgoing calls."""
    return {name: incoming[name] for name in PROPAGATED_HEADERS if name in incoming}


def stars_from(status: int, body: Any) -> dict[str, int]:
    """Stars per reviewer from a ratings answer; empty when the answer is unusable."""
    if status != 200 or not isinstance(body, dict) or not isinstance(body.get("ratings"), dict):
        return {}
    return {k: v for k, v in body["ratings"].items() if isinstance(v, int)}


def reviews_body(settings: Settings, product_id: int, stars: dict[str, int]) -> dict[str, Any]:
    """The JSON document Istio's reviews service returns."""
    reviews: list[dict[str, Any]] = []
    for reviewer, text in REVIEWS:
        review: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if settings.ratings_enabled:
            if reviewer in stars:
                review["rating"] = {"stars": stars[reviewer], "color": settings.star_color}
            else:
                review["rating"] = {"error": RATINGS_UNAVAILABLE}
        reviews.append(review)
    return {
        "id": str(product_id),
        "podname": settings.podname,
        "clustername": settings.clustername,
        "reviews": reviews,
    }


def handle(settings: Settings, fetch: Fetch, request: Request) -> Response:
    """Route one request; ``fetch`` is the only way out to ``ratings``."""
    path = urlsplit(request.path).path
    if request.method != "GET":
        return json_response(405, {"error": f"method {request.method} not allowed"})
    if path == "/health":
        return json_response(200, {"status": "Reviews is healthy"})
    if not path.startswith("/reviews/"):
        return json_response(404, {"error": f"{path} not found"})
    try:
        product_id = int(path.rsplit("/", 1)[1])
    except ValueError:
        return json_response(400, {"error": "please provide numeric product id"})
    stars: dict[str, int] = {}
    if settings.ratings_enabled:
        url = f"{settings.ratings_url}/ratings/{quote(str(product_id))}"
        status, body = fetch(url, forward_headers(request.headers), settings.ratings_timeout)
        stars = stars_from(status, body)
        if not stars:
            print(f"{SERVICE}: error: unable to contact {url}, got status {status}", flush=True)
    return json_response(200, reviews_body(settings, product_id, stars))


# --- I/O edge: outgoing calls ---------------------------------------------------------------

# No proxy handler settings from the environment: the app calls services by name directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def fetch_json(url: str, headers: Mapping[str, str], timeout: float) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=dict(headers), method="GET")
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return int(answer.status), _parse_json(answer.read())
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), _parse_json(err.read())
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None


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
    server.app = lambda request: handle(settings, fetch_json, request)
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
