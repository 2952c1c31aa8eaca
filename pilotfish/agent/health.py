"""The agent's HTTP server (Istio's 15020): readiness and the merged metrics.

``GET /healthz/ready``   200 ``ready`` when Envoy is LIVE, has its first CDS and LDS and is not
                        draining; otherwise 503 with the reason. Envoy's readiness listener
                        (15021) forwards its probes here.
``GET /stats/prometheus`` what Prometheus scrapes (Istio's ``prometheus.io/port: 15020``,
                        ``prometheus.io/path: /stats/prometheus``): Envoy's stats with Istio's
                        names (``envoy_istio_*`` become ``istio_*``), the agent's own series
                        (``istio_build{component="proxy"}``, its scrape counters) and, when the
                        pod declares ``prometheus.io/scrape``, the app's own metrics from its
                        port and path (see :mod:`pilotfish.telemetry.promtext`). 503 while
                        Envoy's admin does not answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import urlsplit

from pilotfish import __version__
from pilotfish.agent.admin import AdminClient, Readiness
from pilotfish.agent.http import HttpError, HttpServer, Response, request
from pilotfish.agent.settings import AppMetrics
from pilotfish.telemetry.promtext import (
    CONTENT_TYPE,
    Family,
    Sample,
    merge,
    parse,
    rename_prefix,
    render,
)

log = logging.getLogger("pilotfish.agent")

ReadinessProbe = Callable[[], Awaitable[Readiness]]
#: How long the app gets to answer a scrape (Prometheus' own timeout is 10 s by default).
APP_SCRAPE_TIMEOUT_S = 5.0


def agent_families(version: str, scrapes: int, failures: int) -> list[Family]:
    """The agent's own series. Pure."""
    return [
        Family(
            "istio_build",
            "gauge",
            "Istio component build info",
            (Sample("istio_build", (("component", "proxy"), ("tag", version)), 1.0),),
        ),
        Family(
            "istio_agent_scrapes_total",
            "counter",
            "The total number of scrapes.",
            (Sample("istio_agent_scrapes_total", (), float(scrapes)),),
        ),
        Family(
            "istio_agent_scrape_failures_total",
            "counter",
            "The total number of failed scrapes of the app's metrics.",
            (Sample("istio_agent_scrape_failures_total", (), float(failures)),),
        ),
    ]


def merged_exposition(
    envoy: str, agent: list[Family], app: str | None, own: Mapping[str, str] | None = None
) -> str:
    """Envoy's stats renamed to Istio's names (with the proxy's ``own`` workload labels added
    to the standard metrics), then the agent's, then the app's (each family once, the first
    wins). An app exposition that does not parse is left out. Pure."""
    try:
        envoy_families = rename_prefix(parse(envoy), own=own)
    except ValueError as exc:
        log.warning("Envoy's stats did not parse (%s); serving them unmerged", exc)
        return envoy + render(agent)
    app_families: list[Family] = []
    if app:
        try:
            app_families = parse(app)
        except ValueError as exc:
            log.warning("the app's metrics did not parse: %s", exc)
    return render(merge(envoy_families, agent, app_families))


class AgentServer:
    """Serves the agent's endpoints on ``bind:port`` until :meth:`stop`."""

    def __init__(
        self,
        bind: str,
        port: int,
        readiness: ReadinessProbe,
        admin: AdminClient,
        app_metrics: AppMetrics | None = None,
        own: Mapping[str, str] | None = None,
    ) -> None:
        """``own``: this proxy's workload values, added to its standard metrics."""
        self.bind = bind
        self._own = dict(own) if own is not None else None
        self.port = port
        self._readiness = readiness
        self._admin = admin
        self._app_metrics = app_metrics
        self._server: HttpServer | None = None
        self.scrapes = 0
        self.scrape_failures = 0

    async def start(self) -> None:
        self._server = HttpServer(self.handle)
        await self._server.start(self.bind, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    async def handle(self, method: str, target: str) -> Response:
        path = urlsplit(target).path
        if path == "/healthz/ready":
            return await self._ready()
        if path == "/stats/prometheus":
            return await self._prometheus()
        return Response(404, b"not found\n", {"content-type": "text/plain"})

    async def _ready(self) -> Response:
        result = await self._readiness()
        if result.ready:
            return Response(200, b"ready\n", {"content-type": "text/plain; charset=utf-8"})
        headers = {"content-type": "text/plain; charset=utf-8"}
        if result.code:
            headers["X-Pilotfish-Reason"] = result.code
        return Response(503, f"not ready: {result.reason}\n".encode(), headers)

    async def _scrape_app(self) -> str | None:
        target = self._app_metrics
        if target is None:
            return None
        try:
            response = await request(
                target.host,
                target.port,
                "GET",
                target.path,
                timeout=APP_SCRAPE_TIMEOUT_S,
                headers=[("Accept", "text/plain;version=0.0.4")],
            )
        except HttpError as exc:
            self.scrape_failures += 1
            log.debug("scraping the app's metrics at %s failed: %s", target.url, exc)
            return None
        if response.status != 200:
            self.scrape_failures += 1
            log.debug("the app's metrics at %s: HTTP %d", target.url, response.status)
            return None
        return response.text

    async def _prometheus(self) -> Response:
        self.scrapes += 1
        status, body, content_type = await self._admin.prometheus()
        if status != 200:
            return Response(status, body, {"content-type": content_type})
        app = await self._scrape_app()
        agent = agent_families(__version__, self.scrapes, self.scrape_failures)
        text = merged_exposition(body.decode(errors="replace"), agent, app, self._own)
        return Response(200, text.encode(), {"content-type": CONTENT_TYPE})
