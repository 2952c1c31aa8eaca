"""The agent's HTTP server (Istio's 15020): readiness and Envoy's metrics.

``GET /healthz/ready``   200 ``ready`` when Envoy is LIVE, has its first CDS and LDS and is not
                        draining; otherwise 503 with the reason. Envoy's readiness listener
                        (15021) forwards its probes here.
``GET /stats/prometheus`` Envoy's admin ``/stats/prometheus`` (a later change merges the
                        Istio standard metrics and the app's own).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from pilotfish.agent.admin import AdminClient, Readiness

ReadinessProbe = Callable[[], Awaitable[Readiness]]


class AgentServer:
    """Serves the agent's endpoints on ``bind:port`` until :meth:`stop`."""

    def __init__(self, bind: str, port: int, readiness: ReadinessProbe, admin: AdminClient) -> None:
        self.bind = bind
        self.port = port
        self._readiness = readiness
        self._admin = admin
        self._runner: web.AppRunner | None = None

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

    async def _ready(self, request: web.Request) -> web.Response:
        result = await self._readiness()
        if result.ready:
            return web.Response(text="ready\n")
        headers = {"X-Pilotfish-Reason": result.code} if result.code else None
        return web.Response(status=503, text=f"not ready: {result.reason}\n", headers=headers)

    async def _prometheus(self, request: web.Request) -> web.Response:
        status, body, content_type = await self._admin.prometheus()
        response = web.Response(status=status, body=body)
        response.headers["Content-Type"] = content_type
        return response
