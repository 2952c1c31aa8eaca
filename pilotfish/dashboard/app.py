"""The dashboard's web server: the app's files, sign-in, and the data calls it makes.

The control plane serves it on ``127.0.0.1:20001`` (Kiali's port; ``--dashboard-listen``).
Everything under ``/api/`` needs a session (see :mod:`pilotfish.dashboard.sessions`)::

    GET  /api/graph?graphType=workload&namespaces=default&duration=5m   the service graph
    GET  /api/namespaces                                                 namespaces in the store
    GET  /api/prometheus/query, /api/prometheus/query_range              the mesh's Prometheus
    GET  /api/jaeger/...                                                 the Jaeger query API
    GET  /api/config                       resources with their analyzer messages
    GET  /api/config/for?namespace=&service=&workload=   the config that applies to a node
    GET  /api/proxies                      proxy sync state (as `pilotfish proxy-status`)
    GET  /api/proxies/{ns}/{name}/config   a proxy's generated Envoy config as tables
    GET  /api/services                     services with their subsets and versions
    POST /api/wizards/{wizard}             {"service", "namespace", "spec", "mode"}:
                                           mode "preview" (YAML), "dryRun" or "apply"
                                           through the control plane's API

The graph is a few PromQL queries against the mesh's Prometheus, turned into nodes and edges
by the pure :mod:`pilotfish.dashboard.graph`: request rates, TCP bytes and the recorded
response times, concurrently; the request-duration buckets only when the recorded response
times do not cover every edge (see :class:`ResponseTimeSource`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources as package_files
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from pilotfish.api.kinds import APPLY_PATH, DASHBOARD_PATH
from pilotfish.config.store.base import Store
from pilotfish.dashboard import config as cfg
from pilotfish.dashboard import graph, wizards
from pilotfish.dashboard.sessions import COOKIE, SESSION_TTL, Sessions

log = logging.getLogger("pilotfish.dashboard")

DEFAULT_PORT = 20001
StatusProvider = Callable[[], list[dict[str, Any]]]
ConfigProvider = Callable[[str, str], dict[str, list[dict[str, Any]]] | None]


def static_dir() -> Path:
    return Path(str(package_files.files("pilotfish.dashboard") / "static"))


@dataclass
class DashboardSettings:
    #: The control plane's admin tokens (sign-in with the token).
    tokens: frozenset[str]
    #: The control plane's HTTP API (wizards apply through it) and the token it takes.
    api_url: str
    api_token: str
    prometheus_url: str = "http://127.0.0.1:9090"
    jaeger_url: str = "http://127.0.0.1:16686"
    proxy_status: StatusProvider = field(default=lambda: [])
    proxy_config: ConfigProvider = field(default=lambda ns, name: None)
    static: Path = field(default_factory=static_dir)


class UpstreamError(Exception):
    """Prometheus or the trace collector did not answer."""


@dataclass
class ResponseTimeSource:
    """Whether to ask Prometheus for the recorded response times of a window.

    They are asked for with the other queries. When a Prometheus answers none while edges have
    requests (it does not load :func:`pilotfish.dashboard.graph.recording_rules`), the next
    graphs of that window for ``retry_after`` seconds query the duration buckets at once,
    concurrently with the rest, instead of one query after the other."""

    retry_after: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _absent_until: dict[str, float] = field(default_factory=dict)

    def worth_asking(self, duration: str) -> bool:
        return self.clock() >= self._absent_until.get(duration, 0.0)

    def answered(self, duration: str, *, requests: bool, recorded: bool) -> None:
        if requests and not recorded:
            self._absent_until[duration] = self.clock() + self.retry_after
        elif recorded:
            self._absent_until.pop(duration, None)


class Dashboard:
    def __init__(self, store: Store, settings: DashboardSettings) -> None:
        self.store = store
        self.settings = settings
        self.sessions = Sessions(settings.tokens)
        self._http: httpx.AsyncClient | None = None
        self.response_times = ResponseTimeSource()

    # ------------------------------------------------------------------ app

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/login/{code}", self.login_link)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/static/{file}", self.static)
        r.add_get("/api/session", self.session)
        r.add_get("/api/graph", self.graph)
        r.add_get("/api/namespaces", self.namespaces)
        r.add_get("/api/prometheus/{what:query|query_range}", self.prometheus)
        r.add_get("/api/jaeger/{tail:.*}", self.jaeger)
        r.add_get("/api/config", self.config)
        r.add_get("/api/config/for", self.config_for)
        r.add_get("/api/proxies", self.proxies)
        r.add_get("/api/proxies/{namespace}/{name}/config", self.proxy_config)
        r.add_get("/api/services", self.services)
        r.add_post("/api/wizards/{wizard}", self.wizard)
        return app

    async def _open(self, app: web.Application) -> None:
        self._http = httpx.AsyncClient(timeout=15.0, trust_env=False)

    async def _close(self, app: web.Application) -> None:
        if self._http is not None:
            await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        assert self._http is not None, "the dashboard app is not started"
        return self._http

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if (
            request.path.startswith("/api/")
            and request.path != "/api/session"
            and not self.sessions.valid(request.cookies.get(COOKIE))
        ):
            return web.json_response(
                {"error": "sign in first: the dashboard needs a session"}, status=401
            )
        # With the SameSite=Strict cookie, and a JSON body no form can send: no CSRF.
        if (
            request.method == "POST"
            and request.path.startswith("/api/")
            and "json" not in request.content_type
        ):
            return web.json_response({"error": "send JSON"}, status=415)
        try:
            resp = await handler(request)
        except UpstreamError as exc:
            return web.json_response({"error": str(exc)}, status=502)
        resp.headers.setdefault("Cache-Control", "no-store")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    # ------------------------------------------------------------------ files, sign-in

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self.settings.static / "index.html")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        path = self.settings.static / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    def _signed_in(self, session: str, location: str) -> web.StreamResponse:
        resp = web.HTTPFound(location)
        resp.set_cookie(
            COOKIE,
            session,
            httponly=True,
            samesite="Strict",
            path="/",
            max_age=int(SESSION_TTL),
        )
        return resp

    async def login(self, request: web.Request) -> web.StreamResponse:
        if "json" in request.content_type:
            token = str((await request.json()).get("token", ""))
        else:
            token = str((await request.post()).get("token", ""))
        session = self.sessions.login_with_token(token)
        if session is None:
            return web.json_response({"error": "wrong token"}, status=401)
        return self._signed_in(session, "/")

    async def login_link(self, request: web.Request) -> web.StreamResponse:
        session = self.sessions.login_with_code(request.match_info["code"])
        if session is None:
            return web.Response(
                status=401,
                text="This login link was used already or has expired: run `pilotfish "
                "dashboard` again, or sign in with the admin token.",
            )
        page = request.query.get("page", "graph")
        return self._signed_in(session, f"/#{page}" if page.isalnum() else "/")

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.logout(request.cookies.get(COOKIE))
        resp = web.HTTPFound("/")
        resp.del_cookie(COOKIE, path="/")
        return resp

    async def session(self, request: web.Request) -> web.Response:
        """Whether this browser is signed in (200 either way: the app asks before signing in)."""
        if not self.sessions.valid(request.cookies.get(COOKIE)):
            return web.json_response({"signedIn": False})
        return web.json_response(
            {
                "signedIn": True,
                "prometheus": self.settings.prometheus_url,
                "jaeger": self.settings.jaeger_url,
            }
        )

    # ------------------------------------------------------------------ graph

    async def _promql(self, query: str) -> list[dict[str, Any]]:
        try:
            resp = await self.http.get(
                f"{self.settings.prometheus_url}/api/v1/query", params={"query": query}
            )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError(
                f"the mesh's Prometheus at {self.settings.prometheus_url} did not answer: {exc}"
            ) from None
        if body.get("status") != "success":
            raise UpstreamError(f"Prometheus refused {query!r}: {body.get('error')}")
        return list(body["data"]["result"])

    async def graph(self, request: web.Request) -> web.Response:
        q = request.query
        graph_type = q.get("graphType", "workload")
        duration = q.get("duration", "5m")
        namespaces = [n for n in q.get("namespaces", "").split(",") if n] or None
        try:
            queries = graph.graph_queries(duration)
            if graph_type not in graph.GRAPH_TYPES:
                raise ValueError(f"graphType: must be one of {', '.join(graph.GRAPH_TYPES)}")
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        started = time.perf_counter()
        durations: list[dict[str, Any]] = []
        quantiles: list[dict[str, Any]] = []
        if self.response_times.worth_asking(duration):
            requests, tcp, quantiles = await asyncio.gather(
                self._promql(queries.requests),
                self._promql(queries.tcp),
                self._promql(queries.quantiles),
            )
            self.response_times.answered(
                duration, requests=bool(requests), recorded=bool(quantiles)
            )
            if graph.response_times_missing(requests, quantiles):
                durations = await self._promql(queries.durations)
        else:
            requests, tcp, durations = await asyncio.gather(
                self._promql(queries.requests),
                self._promql(queries.tcp),
                self._promql(queries.durations),
            )
        queried = time.perf_counter()
        body = graph.build_graph(
            requests,
            durations,
            tcp,
            quantiles=() if durations else quantiles,
            graph_type=graph_type,
            namespaces=namespaces,
        )
        body["duration"] = duration
        body["timestamp"] = time.time()
        # Where the edges' p50/p95/p99 come from: Prometheus' recording rules, or the buckets.
        body["responseTimes"] = "computed" if durations else "recorded" if quantiles else "none"
        body["timings"] = {
            "queryMs": round(1000 * (queried - started), 1),
            "buildMs": round(1000 * (time.perf_counter() - queried), 1),
        }
        return web.json_response(body)

    async def namespaces(self, request: web.Request) -> web.Response:
        names = [o.name for o in self.store.list("Namespace")]
        return web.json_response({"namespaces": names})

    # ------------------------------------------------------------------ proxies to addons

    async def prometheus(self, request: web.Request) -> web.Response:
        what = request.match_info["what"]
        return await self._forward(
            f"{self.settings.prometheus_url}/api/v1/{what}", request, "the mesh's Prometheus"
        )

    async def jaeger(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        return await self._forward(
            f"{self.settings.jaeger_url}/api/{tail}", request, "the trace collector"
        )

    async def _forward(self, url: str, request: web.Request, what: str) -> web.Response:
        try:
            resp = await self.http.get(url, params=list(request.query.items()))
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{what} at {url} did not answer: {exc}") from None
        return web.Response(
            body=resp.content,
            status=resp.status_code,
            content_type="application/json",
        )

    # ------------------------------------------------------------------ config

    def _resources(self) -> list[dict[str, Any]]:
        return cfg.resources_with_messages([o.body for o in self.store.list()])

    async def config(self, request: web.Request) -> web.Response:
        resources = await asyncio.to_thread(self._resources)
        return web.json_response({"items": resources})

    def _labels_of(self, namespace: str, workload: str) -> dict[str, str] | None:
        for kind in ("Deployment", "WorkloadEntry"):
            for o in self.store.list(kind, namespace):
                if o.name == workload:
                    spec = o.body.get("spec") or {}
                    tmpl = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
                    return dict(tmpl or spec.get("labels") or {})
        return None

    async def config_for(self, request: web.Request) -> web.Response:
        q = request.query
        namespace = q.get("namespace", "default")
        workload = q.get("workload", "")
        labels = self._labels_of(namespace, workload) if workload else None
        service = q.get("service", "") or (labels or {}).get("app", "")
        resources = await asyncio.to_thread(self._resources)
        items = cfg.config_for(resources, namespace=namespace, service=service, labels=labels)
        return web.json_response({"service": service, "labels": labels, "items": items})

    async def proxies(self, request: web.Request) -> web.Response:
        return web.json_response({"items": self.settings.proxy_status()})

    async def proxy_config(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        config = self.settings.proxy_config(ns, name)
        if config is None:
            return web.json_response(
                {"error": f'proxy "{name}.{ns}" is not connected to the control plane'},
                status=404,
            )
        return web.json_response(cfg.envoy_tables(config))

    def _versions(self, service: str, namespace: str) -> dict[str, dict[str, str]]:
        """version -> pod labels selecting it, from the Deployments of the service's app."""
        out: dict[str, dict[str, str]] = {}
        svc = next((o for o in self.store.list("Service", namespace) if o.name == service), None)
        selector = ((svc.body.get("spec") or {}).get("selector") or {}) if svc else {}
        for o in self.store.list("Deployment", namespace):
            tmpl = ((o.body.get("spec") or {}).get("template") or {}).get("metadata") or {}
            labels = tmpl.get("labels") or {}
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                version = labels.get("version")
                if version:
                    out[str(version)] = {"version": str(version)}
        return out

    async def services(self, request: web.Request) -> web.Response:
        resources = await asyncio.to_thread(self._resources)
        items = []
        for o in self.store.list("Service"):
            items.append(
                {
                    "name": o.name,
                    "namespace": o.namespace,
                    "subsets": cfg.subsets_of(resources, o.name, o.namespace),
                    "versions": sorted(self._versions(o.name, o.namespace)),
                }
            )
        return web.json_response({"items": items})

    # ------------------------------------------------------------------ wizards

    async def wizard(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, Mapping):
            return web.json_response({"error": "send a JSON object"}, status=400)
        service, namespace = str(body.get("service", "")), str(body.get("namespace", ""))
        mode = str(body.get("mode", "preview"))
        spec = body.get("spec") or {}
        resources = await asyncio.to_thread(self._resources)
        try:
            built = wizards.build(
                request.match_info["wizard"],
                service,
                namespace,
                spec if isinstance(spec, Mapping) else {},
                subsets_defined=cfg.subsets_of(resources, service, namespace),
                versions=self._versions(service, namespace),
            )
        except wizards.WizardError as exc:
            return web.json_response({"error": str(exc)}, status=422)
        out: dict[str, Any] = {"yaml": wizards.to_yaml(built), "resources": built}
        if mode in ("dryRun", "apply"):
            dry = await self._apply(built, dry_run=True)
            out["dryRun"] = dry
            if dry["ok"] and mode == "apply":
                out["applied"] = await self._apply(built, dry_run=False)
            status = 200 if (out.get("applied") or dry)["ok"] else 422
            return web.json_response(out, status=status)
        return web.json_response(out)

    async def _apply(self, items: list[dict[str, Any]], *, dry_run: bool) -> dict[str, Any]:
        try:
            resp = await self.http.post(
                f"{self.settings.api_url}{APPLY_PATH}",
                json={"items": items, "dryRun": dry_run},
                headers={"Authorization": f"Bearer {self.settings.api_token}"},
            )
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise UpstreamError(f"the control plane's API did not answer: {exc}") from None
        return {"ok": resp.status_code < 400, "status": resp.status_code, "result": body}


def add_dashboard_routes(api: web.Application, dashboard: Dashboard, url: str) -> None:
    """On the control plane's API (behind its token): where the dashboard is (GET), and a
    one-time login link to it (POST), which `pilotfish dashboard` opens."""

    def info() -> dict[str, Any]:
        return {
            "kind": "Dashboard",
            "url": url,
            "prometheus": dashboard.settings.prometheus_url,
            "jaeger": dashboard.settings.jaeger_url,
        }

    async def get(request: web.Request) -> web.Response:
        return web.json_response(info())

    async def post(request: web.Request) -> web.Response:
        code = dashboard.sessions.issue_login_code()
        return web.json_response({**info(), "loginUrl": f"{url}/login/{code}"}, status=201)

    api.router.add_get(DASHBOARD_PATH, get)
    api.router.add_post(DASHBOARD_PATH, post)
