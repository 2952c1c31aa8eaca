"""The agent's /stats/prometheus with a real Envoy: the standard metrics Envoy emits under
the ``istio`` stats scope (a stats access logger) are served as ``istio_*``, merged with the
agent's ``istio_build`` and the app's own metrics scraped from its annotated port."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import yaml

from pilotfish import __version__
from pilotfish.agent.admin import AdminClient, Readiness
from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.agent.health import AgentServer
from pilotfish.agent.settings import AppMetrics
from pilotfish.telemetry.promtext import parse

from .conftest import eventually

pytestmark = pytest.mark.integration

BOOTSTRAP = """
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: ADMIN}}
stats_config: {use_all_default_tags: false}
static_resources:
  listeners:
  - name: inbound
    address: {socket_address: {address: 127.0.0.1, port_value: LISTEN}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": HCM
          stat_prefix: inbound
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200, body: {inline_string: ok}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
          access_log:
          - name: envoy.access_loggers.stats
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stats.v3.Config
              stats_scope: {prefix: istio}
              counters:
              - stat:
                  name: requests_total
                  tags:
                  - {name: reporter, value_format: destination}
                  - {name: response_code, value_format: "%RESPONSE_CODE%"}
                value_fixed: 1
"""


def bootstrap(admin_port: int, listen_port: int) -> dict[str, object]:
    """A listener answering 200 whose stats access logger counts each request as
    ``istio.requests_total`` with Istio-style tags."""
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
    text = BOOTSTRAP.replace("ADMIN", str(admin_port)).replace("LISTEN", str(listen_port))
    text = text.replace('"@type": HCM', f'"@type": {hcm}HttpConnectionManager')
    return dict(yaml.safe_load(text))


@pytest.fixture
def envoy(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[tuple[int, int]]:
    """A real Envoy: (admin port, listener port)."""
    admin, listen = free_port(), free_port()
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap(admin, listen)))
    log = tmp_path / "envoy.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(envoy_binary()), "-c", str(path), "--disable-hot-restart", "-l", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield admin, listen
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def app_metrics(free_port: Callable[[], int]) -> Iterator[int]:
    """The app's own Prometheus endpoint (``prometheus.io/port``) on ``/app-metrics``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/app-metrics":
                self.send_error(404)
                return
            body = (
                b"# HELP orders_total Orders taken.\n# TYPE orders_total counter\n"
                b'orders_total{kind="book"} 42\n'
                b"# TYPE istio_requests_total counter\nistio_requests_total 999\n"
            )
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


async def _ready() -> Readiness:
    return Readiness(True, "")


async def test_envoy_istio_series_are_served_with_istio_names_and_the_apps_merged(
    envoy: tuple[int, int], app_metrics: int, free_port: Callable[[], int]
) -> None:
    admin_port, listen_port = envoy
    admin = AdminClient(admin_port)
    server = AgentServer(
        "127.0.0.1", free_port(), _ready, admin, AppMetrics(app_metrics, "/app-metrics")
    )
    await server.start()
    url = f"http://127.0.0.1:{server.port}/stats/prometheus"
    try:
        async with httpx.AsyncClient(timeout=5) as client:

            async def served() -> bool:
                try:
                    await client.get(f"http://127.0.0.1:{listen_port}/x")
                    return (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(served, what="Envoy up and counted a request")
            for _ in range(2):
                assert (await client.get(f"http://127.0.0.1:{listen_port}/x")).status_code == 200
            response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in parse(response.text)}
        assert "envoy_istio_requests_total" not in families
        requests = families["istio_requests_total"]
        assert requests.type == "counter"
        [sample] = requests.samples
        assert dict(sample.labels) == {"reporter": "destination", "response_code": "200"}
        assert sample.value >= 3  # Envoy's count, not the app's forged 999
        # Envoy's own series keep Envoy's names.
        assert "envoy_server_live" in families
        # The agent's own.
        [build] = families["istio_build"].samples
        assert dict(build.labels) == {"component": "proxy", "tag": __version__}
        # The app's, from its annotated port and path.
        [orders] = families["orders_total"].samples
        assert dict(orders.labels) == {"kind": "book"} and orders.value == 42
        assert families["istio_agent_scrape_failures_total"].samples[0].value == 0
    finally:
        await server.stop()
        await admin.aclose()
