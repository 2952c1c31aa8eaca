"""What the four Bookinfo apps share: their request/response shapes, the settings every app reads
to listen, the calls to other services, and the HTTP server edge.

Each app (``details.py``, ``ratings.py``, ``reviews.py``, ``productpage.py``) imports this module
as a sibling (``from bookinfo_http import ...``): Python puts a script's own directory first on
``sys.path``, so ``python3 samples/bookinfo/src/details.py`` finds it from any working directory
and under any user. Standard library only, like the apps.

The apps keep their routing and rendering pure (``Request`` in, ``Response`` out); this module
owns the I/O at both ends:

- ``serve`` runs a threading HTTP/1.1 server around an app's handler. It writes one line per
  request to stdout before answering (time, ``<service>-<version>``, method and path, status,
  elapsed time, ``end-user`` and ``x-request-id``), turns an exception in the handler into a 500
  JSON answer, and names itself ``bookinfo-<service>`` in the ``Server`` header.
- ``fetch_json`` GETs another service's JSON, calling it by name directly: environment proxy
  settings are ignored, since the mesh sidecar captures the traffic.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, cast

#: Headers copied from an incoming request to the calls it causes (Istio's list for its apps).
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


# --- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """Where an app listens and which version it says it is; apps extend it with their own."""

    port: int = 9080
    bind: str = "0.0.0.0"
    version: str = "v1"

    @classmethod
    def from_env(cls, env: Mapping[str, str], argv: list[str] | None = None) -> Self:
        """``PORT`` (a port given as the first command-line argument wins, as with Istio's
        images), ``BIND_ADDRESS`` and ``SERVICE_VERSION``; other fields keep their defaults."""
        port = argv[1] if argv and len(argv) > 1 else env.get("PORT", "9080")
        return cls(
            port=int(port),
            bind=env.get("BIND_ADDRESS", "0.0.0.0"),
            version=env.get("SERVICE_VERSION", "v1"),
        )


def service_url(env: Mapping[str, str], name: str) -> str:
    """``<NAME>_URL``, else Istio's ``<NAME>_HOSTNAME`` + ``SERVICES_DOMAIN`` on port 9080."""
    explicit = env.get(f"{name.upper()}_URL")
    if explicit:
        return explicit.rstrip("/")
    host = env.get(f"{name.upper()}_HOSTNAME") or name
    domain = env.get("SERVICES_DOMAIN")
    return f"http://{host}{'.' + domain if domain else ''}:9080"


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


#: An app: routes one request.
App = Callable[[Request], Response]

#: GET ``url`` with ``headers`` and a timeout; returns (status, parsed JSON or None), status 0
#: when no HTTP answer came at all.
Fetch = Callable[[str, Mapping[str, str], float], tuple[int, Any]]


def json_response(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload).encode())


def propagated_headers(incoming: Mapping[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """The headers of ``incoming`` (lower-case names) among ``names``, in the order of ``names``."""
    return {name: incoming[name] for name in names if name in incoming}


def request_log_line(
    label: str, request: Request, status: int, elapsed_ms: float, timestamp: str
) -> str:
    """The line an app writes for each request it answered."""
    return (
        f"{timestamp} {label}"
        f' "{request.method} {request.path}" {status} {elapsed_ms:.1f}ms'
        f" end-user={request.headers.get('end-user', '-')}"
        f" x-request-id={request.headers.get('x-request-id', '-')}"
    )


# --- I/O edge: outgoing calls ---------------------------------------------------------------

# No proxy handler settings from the environment: the apps call services by name directly.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def fetch_json(url: str, headers: Mapping[str, str], timeout: float) -> tuple[int, Any]:
    """The ``Fetch`` the apps use: a real GET."""
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
    app: App
    service: str
    label: str


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return f"bookinfo-{cast(_Server, self.server).service} {self.sys_version}"

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
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        line = request_log_line(server.label, request, response.status, elapsed_ms, timestamp)
        print(line, flush=True)
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
        print(f"{cast(_Server, self.server).service}: {format % args}", flush=True)


def make_server(service: str, settings: ServerSettings, app: App) -> ThreadingHTTPServer:
    """The server ``serve`` runs: bound to ``settings.bind``/``settings.port``, not serving yet."""
    server = _Server((settings.bind, settings.port), _Handler)
    server.app = app
    server.service = service
    server.label = f"{service}-{settings.version}"
    return server


def serve(service: str, settings: ServerSettings, app: App) -> None:
    """Answer requests with ``app`` until interrupted; says where it listens first."""
    server = make_server(service, settings, app)
    host, port = server.server_address[:2]
    print(f"{service}-{settings.version} listening on http://{host!s}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
