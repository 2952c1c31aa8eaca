"""The module the Bookinfo apps share (``samples/bookinfo/src/bookinfo_http.py``): standard
library only, its settings and log line, and its server edge on a loopback port."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.samples.bookinfo_apps import (
    SHARED_MODULE,
    SRC,
    load_app_module,
    load_shared_module,
)

bookinfo_http = load_shared_module()
APPS = ("details", "ratings", "reviews", "productpage")


# --- standard library only ------------------------------------------------------------------


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_sources_import_only_the_standard_library_and_their_shared_module() -> None:
    sources = sorted(SRC.glob("*.py"))
    assert {p.stem for p in sources} == {SHARED_MODULE, *APPS}
    for path in sources:
        outside = _imported_roots(path) - set(sys.stdlib_module_names)
        expected = set() if path.stem == SHARED_MODULE else {SHARED_MODULE}
        assert outside == expected, path.name


_LOADED_OUTSIDE_STDLIB = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(n for n in sys.modules if n.split(".")[0] not in sys.stdlib_module_names)))
"""


@pytest.mark.parametrize("module", [SHARED_MODULE, *APPS])
def test_importing_loads_nothing_outside_the_standard_library(module: str) -> None:
    """Without site-packages, as the apps run; transitive imports count too."""
    done = subprocess.run(
        [sys.executable, "-E", "-s", "-S", "-c", _LOADED_OUTSIDE_STDLIB, module],
        cwd=SRC,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = {"__main__", module, SHARED_MODULE}
    assert set(json.loads(done.stdout)) == expected


# --- settings and pure helpers --------------------------------------------------------------


def test_server_settings_from_env_and_argv() -> None:
    settings = bookinfo_http.ServerSettings.from_env({})
    assert (settings.port, settings.bind, settings.version) == (9080, "0.0.0.0", "v1")
    env = {"PORT": "81", "BIND_ADDRESS": "127.0.0.2", "SERVICE_VERSION": "v7"}
    settings = bookinfo_http.ServerSettings.from_env(env, ["app.py"])
    assert (settings.port, settings.bind, settings.version) == (81, "127.0.0.2", "v7")
    assert bookinfo_http.ServerSettings.from_env(env, ["app.py", "9091"]).port == 9091


def test_apps_settings_keep_their_own_fields_and_the_listen_fields() -> None:
    env = {"PORT": "82", "SERVICE_VERSION": "v3", "RATINGS_HOSTNAME": "r", "SERVICES_DOMAIN": "d"}
    reviews = load_app_module("reviews").Settings.from_env(env)
    assert (reviews.port, reviews.version, reviews.star_color) == (82, "v3", "red")
    assert reviews.ratings_url == "http://r.d:9080"
    page = load_app_module("productpage").Settings.from_env({**env, "SESSION_SECRET": "s"})
    assert (page.port, page.version, page.session_secret) == (82, "v3", "s")
    assert type(page).__name__ == "Settings" and isinstance(page, bookinfo_http.ServerSettings)


def test_request_log_line() -> None:
    request = bookinfo_http.Request("GET", "/a?b=1", {"end-user": "jason", "x-request-id": "r1"})
    line = bookinfo_http.request_log_line("details-v1", request, 200, 1.25, "2024-01-02T03:04:05")
    assert line == (
        '2024-01-02T03:04:05 details-v1 "GET /a?b=1" 200 1.2ms end-user=jason x-request-id=r1'
    )
    anonymous = bookinfo_http.Request("POST", "/x", {})
    line = bookinfo_http.request_log_line("ratings-v1", anonymous, 503, 0.0, "T")
    assert line == 'T ratings-v1 "POST /x" 503 0.0ms end-user=- x-request-id=-'


def test_propagated_headers_keep_the_order_of_the_names() -> None:
    incoming = {"end-user": "u", "b3": "1", "x-request-id": "r", "cookie": "c", "other": "o"}
    got = bookinfo_http.propagated_headers(incoming, bookinfo_http.PROPAGATED_HEADERS)
    assert list(got.items()) == [("x-request-id", "r"), ("b3", "1"), ("end-user", "u")]
    forwarded = load_app_module("productpage").forward_headers(incoming, "")
    assert list(forwarded) == ["x-request-id", "b3", "end-user", "cookie"]
    assert list(load_app_module("reviews").forward_headers(incoming)) == list(got)


# --- the server edge --------------------------------------------------------------------------


@contextmanager
def serving(app: Any, service: str = "demo", version: str = "v9") -> Iterator[str]:
    settings = bookinfo_http.ServerSettings(port=0, bind="127.0.0.1", version=version)
    server = bookinfo_http.make_server(service, settings, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_server_hands_the_request_to_the_app_and_logs_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[Any] = []

    def app(request: Any) -> Any:
        seen.append(request)
        return bookinfo_http.Response(201, b"made", "text/plain", (("X-Extra", "1"),))

    with serving(app) as url, httpx.Client(trust_env=False, timeout=30.0) as client:
        answer = client.post(f"{url}/things?a=1", content=b"payload", headers={"End-User": "u1"})
    assert (answer.status_code, answer.text) == (201, "made")
    assert answer.headers["content-type"] == "text/plain"
    assert answer.headers["x-extra"] == "1"
    assert answer.headers["server"].startswith("bookinfo-demo Python/")
    (request,) = seen
    assert (request.method, request.path, request.body) == ("POST", "/things?a=1", b"payload")
    assert request.headers["end-user"] == "u1"
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split(" ", 1)[1].startswith('demo-v9 "POST /things?a=1" 201 ')
    assert line.endswith(" end-user=u1 x-request-id=-")


def test_server_answers_500_when_the_app_raises(capsys: pytest.CaptureFixture[str]) -> None:
    def app(request: Any) -> Any:
        raise RuntimeError("boom")

    with serving(app) as url, httpx.Client(trust_env=False, timeout=30.0) as client:
        answer = client.get(f"{url}/x")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error: boom"}
    assert ' "GET /x" 500 ' in capsys.readouterr().out


def test_fetch_json_reports_status_body_and_unreachable(free_port: Callable[[], int]) -> None:
    def app(request: Any) -> Any:
        if request.path == "/bad":
            return bookinfo_http.Response(503, b"not json")
        return bookinfo_http.json_response(200, {"echo": request.headers.get("x-a")})

    with serving(app) as url:
        assert bookinfo_http.fetch_json(f"{url}/ok", {"x-a": "1"}, 10.0) == (200, {"echo": "1"})
        assert bookinfo_http.fetch_json(f"{url}/bad", {}, 10.0) == (503, None)
    assert bookinfo_http.fetch_json(f"http://127.0.0.1:{free_port()}/", {}, 10.0) == (0, None)
