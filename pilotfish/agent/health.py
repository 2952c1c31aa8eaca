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

import httpx
from aiohttp import web

from pilotfish import __version__
from pilotfish.agent.admin import AdminClient, Readiness
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
        self._runner: web.AppRunner | None = None
        self._http: httpx.AsyncClient | None = None
        self.scrapes = 0
        self.scrape_failures = 0

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz/ready", self._ready)
        app.router.add_get("/stats/prometheus", self._prometheus)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _ready(self, request: web.Request) -> web.Response:
        result = await self._readiness()
        if result.ready:
            return web.Response(text="ready\n")
        headers = {"X-Pilotfish-Reason": result.code} if result.code else None
        return web.Response(status=503, text=f"not ready: {result.reason}\n", headers=headers)

    async def _scrape_app(self) -> str | None:
        target = self._app_metrics
        if target is None:
            return None
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=APP_SCRAPE_TIMEOUT_S, trust_env=False)
        try:
            response = await self._http.get(
                target.url, headers={"Accept": "text/plain;version=0.0.4"}
            )
        except httpx.HTTPError as exc:
            self.scrape_failures += 1
            log.debug("scraping the app's metrics at %s failed: %r", target.url, exc)
            return None
        if response.status_code != 200:
            self.scrape_failures += 1
            log.debug("the app's metrics at %s: HTTP %d", target.url, response.status_code)
            return None
        return response.text

    async def _prometheus(self, request: web.Request) -> web.Response:
        self.scrapes += 1
        status, body, content_type = await self._admin.prometheus()
        if status != 200:
            response = web.Response(status=status, body=body)
            response.headers["Content-Type"] = content_type
            return response
        app = await self._scrape_app()
        agent = agent_families(__version__, self.scrapes, self.scrape_failures)
        text = merged_exposition(body.decode(errors="replace"), agent, app, self._own)
        response = web.Response(body=text.encode())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response
