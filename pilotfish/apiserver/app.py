"""The control-plane HTTP API: Kubernetes-style paths over the config store.

Paths (``{plural}`` from the kind table, e.g. ``virtualservices``)::

    /api/v1/{plural}[/{name}]                          core kinds: all namespaces / cluster-scoped
    /api/v1/namespaces/{ns}/{plural}[/{name}]               core namespaced kinds
    /apis/{group}/{version}/{plural}                         all namespaces
    /apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]
    POST /apis/pilotfish.io/v1/apply                         a batch (one file) in one transaction
    POST /apis/pilotfish.io/v1/delete                        a batch of deletions in one transaction
    GET  /apis/pilotfish.io/v1/proxystatus                   connected proxies and their xDS state
    GET  /healthz, /ready, /version, /metrics                no token needed (as istiod's)

Lists and gets answer JSON, or YAML when the request asks for ``application/yaml``. Bodies may
be JSON or YAML. ``?dryRun=All`` validates and reports without storing. ``?watch=true`` on a
list streams one JSON event per line (``{"type": "ADDED", "object": {...}}``) from
``resourceVersion`` (or from now, after the current objects as ADDED events).
Validation is the same code as offline ``pilotfish validate``, so messages are identical.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web

from pilotfish import __version__
from pilotfish.api import kinds
from pilotfish.api.kinds import KindInfo
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, service_fqdn
from pilotfish.api.objects import ResourceKey
from pilotfish.api.security import AuthorizationPolicySpec
from pilotfish.api.telemetry import Telemetry
from pilotfish.apiserver.auth import (
    ADMIN_USER,
    Authenticator,
    Principal,
    WorkloadVerifier,
    forbidden,
    new_secret,
)
from pilotfish.apiserver.status import error_status, status_body
from pilotfish.config.loader import MAX_DEPTH, too_deep
from pilotfish.config.meshconfig import mesh_config_of
from pilotfish.config.store.access import API_ROLES, ApiToken, AuditEntry, audit_time, digest
from pilotfish.config.store.addresses import HOLDER_KINDS
from pilotfish.config.store.base import (
    CommitResult,
    Delete,
    Key,
    Operation,
    Put,
    Store,
    StoredObject,
    key_of,
    strip_server_fields,
)
from pilotfish.config.store.plan import plan_commit
from pilotfish.config.store.watch import watch
from pilotfish.config.validation import Validated, validate
from pilotfish.config.validation.meshconfig import (
    custom_provider_warnings,
    telemetry_provider_errors,
)
from pilotfish.errors import (
    AddressTakenError,
    BodyTooLargeError,
    FieldError,
    LoadError,
    NotFoundError,
    PilotfishError,
    Source,
    StoreError,
    ValidationError,
)
from pilotfish.registry.vip import VipAllocator

log = logging.getLogger(__name__)

#: Commits tried when other control planes keep taking the VIPs allocated here.
_ADDRESS_RETRIES = 16

#: Namespaces that always exist, as Kubernetes' default and Istio's root namespace.
BUILTIN_NAMESPACES = ("default", "istio-system")

StatusProvider = Callable[[], list[dict[str, Any]]]
#: (namespace, proxy name) -> the proxy's generated config by type (``clusters``, ...), or None.
ConfigProvider = Callable[[str, str], dict[str, list[dict[str, Any]]] | None]
#: (namespace, pod, method, url, headers) -> the explanation, or None for no such proxy.
ExplainProvider = Callable[[str, str, str, str, dict[str, str]], dict[str, Any] | None]


@dataclass
class ApiSettings:
    tokens: frozenset[str]
    #: Returns the xDS status of connected proxies (empty when no xDS server runs).
    proxy_status: StatusProvider = field(default=lambda: [])
    #: The config the control plane generates for one connected proxy.
    proxy_config: ConfigProvider = field(default=lambda ns, name: None)
    #: What writing these bodies (and deleting these keys) would change in each connected
    #: proxy's Envoy config, computed without storing (``apply`` with ``dryRun`` and
    #: ``diff``); ``None``: no xDS server, no preview.
    config_preview: Callable[[list[dict[str, Any]], list[Key]], list[dict[str, Any]]] | None = None
    #: How a connected proxy's config would handle a request (``x explain``).
    explain: ExplainProvider = field(default=lambda ns, name, method, url, headers: None)
    #: The control plane's one VIP allocator (the registry's): Services applied without a
    #: ``clusterIP`` get theirs from it, so they never collide with ServiceEntry VIPs.
    vips: VipAllocator = field(default_factory=VipAllocator)
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
    #: The control plane's metrics as Prometheus text (``/metrics``); ``None``: no endpoint.
    metrics: Callable[[], str] | None = None
    #: Told of every validation: (Istio's resource plural, passed).
    on_validated: Callable[[str, bool], None] = field(default=lambda resource, ok: None)
    #: Whether the control plane serves proxies (``/ready``).
    ready: Callable[[], bool] = field(default=lambda: True)
    #: Recognizes workload tokens (so they get 403 naming their role rather than 401).
    workload_tokens: WorkloadVerifier | None = None
    #: ``{xdsAddress, xdsTls, rootCert, trustDomain}`` for workloads on other hosts
    #: (``CONTROL_PLANE_PATH``); ``None``: not served.
    control_plane: Callable[[], dict[str, Any]] | None = None
    #: Requests come through the API worker (``apiserver.worker``) over a socket only it
    #: reaches: the caller's address is its ``X-Forwarded-For`` header (the audit's source).
    forwarded: bool = False


#: The authenticated caller of a request.
PRINCIPAL = web.RequestKey("principal", Principal)

#: Paths served without a token (istiod's monitoring and health endpoints).
OPEN_PATHS = frozenset({"/healthz", "/ready", "/version", "/metrics"})
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The header the API worker puts the caller's address in.
FORWARDED_FOR = "X-Forwarded-For"


def _now() -> datetime:
    return datetime.now(UTC)


def _audited(kind: str, verb: str) -> bool:
    """Whether a change is audited: the records the runtime keeps (Events, and Pods it
    creates and updates) are not changes made by a user; deleting a Pod is."""
    if kind == "Event":
        return False
    return not (kind == "Pod" and verb != "delete")


def _ref(key: Key, result: str) -> dict[str, str]:
    return {"kind": key.kind, "namespace": key.namespace, "name": key.name, "result": result}


def _resource_plural(kind: str) -> str:
    try:
        return kinds.lookup(kind).plural
    except PilotfishError:
        return kind.lower() or "unknown"


def ensure_builtin_namespaces(store: Store) -> None:
    """Create ``default`` and ``istio-system`` when the store lacks them."""
    ops: list[Operation] = []
    for ns in BUILTIN_NAMESPACES:
        if store.get(Key("Namespace", "", ns)) is None:
            ops.append(
                Put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {}})
            )
    if ops:
        store.commit(ops)


# ---------------------------------------------------------------------------- rendering


def _wants_yaml(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "yaml" in accept or request.query.get("output") == "yaml"


def respond(request: web.Request, body: Any, status: int = 200) -> web.Response:
    if _wants_yaml(request):
        text = yaml.safe_dump(body, sort_keys=False, default_flow_style=False)
        return web.Response(text=text, status=status, content_type="application/yaml")
    return web.json_response(body, status=status)


def error_response(request: web.Request, err: PilotfishError) -> web.Response:
    body = error_status(err)
    return respond(request, body, int(body["code"]))


#: The largest request body the API reads (aiohttp's ``client_max_size``): far above any real
#: apply (the whole Bookinfo sample is 20 KiB), small enough that one request cannot exhaust memory.
MAX_BODY = 32 * 1024**2


async def read_body(request: web.Request) -> Any:
    try:
        raw = await request.text()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLargeError(
            f"request body is larger than {MAX_BODY // 1024**2} MiB, the most this server "
            "accepts; apply the resources in smaller batches"
        ) from None
    if not raw.strip():
        raise ValidationError(ResourceKey.of("request"), [FieldError("", "empty request body")])
    try:
        data = json.loads(raw) if "json" in request.content_type else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValidationError(
            ResourceKey.of("request"), [FieldError("", f"invalid body: {e}")]
        ) from None
    except RecursionError:
        raise LoadError(f"request body is nested deeper than {MAX_DEPTH} levels") from None
    deep = too_deep(data)
    if deep is not None:
        raise LoadError(f"request body: {deep}: nested deeper than {MAX_DEPTH} levels")
    return data


def _request_fields(req: Any, fields: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """The fields of a batch request, each checked for its JSON type (422 naming the field)."""
    if not isinstance(req, dict):
        raise ValidationError(ResourceKey.of("request"), [FieldError("", "must be an object")])
    errs = [
        FieldError(name, f"Invalid value: must be {_json_type(types)}")
        for name, types in fields.items()
        if req.get(name) is not None and not isinstance(req[name], types)
    ]
    if errs:
        raise ValidationError(ResourceKey.of("request"), errs)
    return req


def _json_type(types: type | tuple[type, ...]) -> str:
    names = {list: "a list", dict: "an object", str: "a string", bool: "a boolean"}
    seq = types if isinstance(types, tuple) else (types,)
    return " or ".join(names.get(t, t.__name__) for t in seq)


def _sources(raw: Any, count: int) -> list[Source | None]:
    """The ``sources`` of an apply request (where each item was read), checked by field."""
    if not raw:
        return [None] * count
    out: list[Source | None] = []
    errs: list[FieldError] = []
    for i, s in enumerate(raw):
        if not s:
            out.append(None)
            continue
        ok = (
            isinstance(s, dict)
            and isinstance(s.get("file"), str)
            and isinstance(s.get("document", 0), int)
            and isinstance(s.get("line"), int | None)
            and set(s) <= {"file", "document", "line"}
        )
        if not ok:
            errs.append(
                FieldError(
                    f"sources[{i}]",
                    "Invalid value: must be an object with file (string), document and line "
                    "(integers)",
                )
            )
            out.append(None)
            continue
        out.append(Source(**s))
    if errs:
        raise ValidationError(ResourceKey.of("request"), errs)
    return out


def object_body(obj: StoredObject) -> dict[str, Any]:
    return obj.body


def list_body(info: KindInfo | None, objs: list[StoredObject], revision: int) -> dict[str, Any]:
    return {
        "apiVersion": info.api_version if info else "v1",
        "kind": f"{info.kind}List" if info else "List",
        "metadata": {"resourceVersion": str(revision)},
        "items": [object_body(o) for o in objs],
    }


def _match_labels(body: dict[str, Any], selector: str | None) -> bool:
    """Equality-based label selectors: ``app=reviews,version!=v1,tier`` (kubectl's ``-l``)."""
    if not selector:
        return True
    labels = (body.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.strip().rstrip("=")) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


# ---------------------------------------------------------------------------- the server


class ApiServer:
    """Builds the aiohttp application over a store."""

    def __init__(self, store: Store, settings: ApiSettings) -> None:
        self.store = store
        self.settings = settings
        #: Running watch streams, cancelled at shutdown (they would otherwise only notice a
        #: closed connection at their next write and hold the shutdown up).
        self._watches: set[asyncio.Task[Any]] = set()
        self.auth = Authenticator(settings.tokens, store, settings.workload_tokens)

    async def _cancel_watches(self, app: web.Application) -> None:
        for task in list(self._watches):
            task.cancel()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth_middleware], client_max_size=MAX_BODY)
        app.on_shutdown.append(self._cancel_watches)
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/ready", self.ready)
        r.add_get("/version", self.version)
        r.add_get("/metrics", self.metrics)
        r.add_post(kinds.APPLY_PATH, self.apply_batch)
        r.add_post(kinds.DELETE_PATH, self.delete_batch)
        r.add_get(kinds.PROXY_STATUS_PATH, self.proxy_status)
        r.add_get(kinds.MESH_CONFIG_PATH, self.meshconfig)
        r.add_get(kinds.CONTROL_PLANE_PATH, self.control_plane)
        r.add_get(kinds.PROXY_CONFIG_ROUTE, self.proxy_config)
        r.add_get(kinds.API_TOKENS_PATH, self.list_api_tokens)
        r.add_post(kinds.API_TOKENS_PATH, self.create_api_token)
        r.add_delete(kinds.API_TOKEN_ROUTE, self.delete_api_token)
        r.add_get(kinds.AUDIT_PATH, self.audit_log)
        r.add_post(kinds.PROXY_EXPLAIN_ROUTE, self.proxy_explain)
        for prefix in ("/api/{version}", "/apis/{group}/{version}"):
            r.add_route("*", prefix + "/namespaces/{namespace}/{plural}", self.collection)
            r.add_route("*", prefix + "/namespaces/{namespace}/{plural}/{name}", self.item)
            r.add_route("*", prefix + "/{plural}", self.collection)
            r.add_route("*", prefix + "/{plural}/{name}", self.item)
        return app

    # -- middleware

    @web.middleware
    async def _auth_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.settings.forwarded and FORWARDED_FOR in request.headers:
            request = request.clone(remote=request.headers[FORWARDED_FOR])
        try:
            if request.path not in OPEN_PATHS:
                principal = self.auth.authenticate(request.headers.get("Authorization"))
                if principal is None:
                    return web.json_response(
                        status_body(
                            401, "Unauthorized", "Unauthorized: a valid bearer token is required"
                        ),
                        status=401,
                    )
                plural = request.match_info.get("plural")
                if plural is None and "/serviceaccounts/" in request.path:
                    plural = "serviceaccounts/token"
                reason = forbidden(principal, request.method, request.path, plural)
                if reason is not None:
                    return respond(request, status_body(403, "Forbidden", reason), 403)
                request[PRINCIPAL] = principal
            return await handler(request)
        except PilotfishError as e:
            return error_response(request, e)

    # -- plain endpoints

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def ready(self, request: web.Request) -> web.Response:
        if self.settings.ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    async def metrics(self, request: web.Request) -> web.Response:
        if self.settings.metrics is None:
            raise NotFoundError("this server exports no metrics")
        body = self.settings.metrics().encode()
        return web.Response(body=body, headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    def _validate(self, body: dict[str, Any], **kw: Any) -> Validated:
        """:func:`validate`, counted for ``galley_validation_passed``/``_failed``."""
        try:
            validated = validate(body, **kw)
        except ValidationError as e:
            self.settings.on_validated(_resource_plural(e.resource.kind), False)
            raise
        except PilotfishError:
            self.settings.on_validated(_resource_plural(str(body.get("kind") or "")), False)
            raise
        self.settings.on_validated(validated.info.plural, True)
        return validated

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": __version__, "revision": self.store.revision()})

    async def meshconfig(self, request: web.Request) -> web.Response:
        """The mesh config in force (Istio's defaults overlaid with the IstioOperators)."""
        mesh = mesh_config_of(self.store)
        return respond(request, mesh.model_dump(by_alias=True, exclude_none=True))

    async def control_plane(self, request: web.Request) -> web.Response:
        """Where and how workloads on other hosts reach this control plane, and the mesh
        roots they verify it with (public: no key material)."""
        if self.settings.control_plane is None:
            raise NotFoundError("this control plane serves no workloads on other hosts")
        return respond(request, {"kind": "ControlPlane", **self.settings.control_plane()})

    async def proxy_status(self, request: web.Request) -> web.Response:
        return respond(request, {"kind": "ProxyStatusList", "items": self.settings.proxy_status()})

    async def proxy_config(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["namespace"], request.match_info["name"]
        config = self.settings.proxy_config(ns, name)
        if config is None:
            raise NotFoundError(
                f'proxy "{name}.{ns}" is not connected (see `pilotfish proxy-status`)'
            )
        return respond(request, {"kind": "ProxyConfig", "name": name, "namespace": ns, **config})

    async def proxy_explain(self, request: web.Request) -> web.Response:
        """``{method, url, headers}`` in; the walk through the generated config out."""
        ns, name = request.match_info["namespace"], request.match_info["name"]
        body = await read_body(request)

        def refuse(path: str, message: str) -> ValidationError:
            return ValidationError(ResourceKey.of("Explanation"), [FieldError(path, message)])

        if not isinstance(body, dict):
            raise refuse("", "the body must be an object: {method, url, headers}")
        method, url, headers = body.get("method", "GET"), body.get("url"), body.get("headers")
        if not isinstance(url, str) or not url:
            raise refuse("url", "required, e.g. http://reviews:9080/")
        if not isinstance(method, str) or not method.isalpha():
            raise refuse("method", f"{method!r} is not an HTTP method")
        if headers is None:
            headers = {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise refuse("headers", "must map header names to strings")
        # On the loop, as proxy_config: the context source is not shared with other threads.
        lowered = {k.lower(): v for k, v in headers.items()}
        result = self.settings.explain(ns, name, method, url, lowered)
        if result is None:
            raise NotFoundError(
                f'proxy "{name}.{ns}" is not connected (see `pilotfish proxy-status`)'
            )
        return respond(request, {"kind": "Explanation", **result})

    # -- tokens and the audit log

    def _audit(self, request: web.Request, verb: str, objects: list[dict[str, str]]) -> AuditEntry:
        """The audit entry of a change ``request`` makes (the store stamps time and revision)."""
        p: Principal = request.get(PRINCIPAL) or Principal(ADMIN_USER, "admin")
        return AuditEntry(
            user=p.user, role=p.role, verb=verb, objects=tuple(objects), source=request.remote or ""
        )

    def record_change(self, request: web.Request, verb: str, objects: list[dict[str, str]]) -> None:
        """Record a change kept outside the config (a CA root rotation step) in the audit log,
        with the revision in force."""
        self.store.record_audit(self._audit(request, verb, objects))

    async def list_api_tokens(self, request: web.Request) -> web.Response:
        items = [t.public() for t in self.store.api_tokens()]
        return respond(request, {"kind": "ApiTokenList", "items": items})

    async def create_api_token(self, request: web.Request) -> web.Response:
        req = _request_fields(await read_body(request), {"name": str, "role": str})
        name, role = str(req.get("name") or ""), str(req.get("role") or "")
        errs: list[FieldError] = []
        if not name or not all(c.isalnum() or c in "-_.:@" for c in name) or len(name) > 253:
            errs.append(FieldError("name", "Required value: letters, digits and -_.:@ only"))
        elif name == ADMIN_USER:
            reserved = f'Invalid value: "{ADMIN_USER}" is reserved for the data directory\'s token'
            errs.append(FieldError("name", reserved))
        if role not in API_ROLES:
            errs.append(
                FieldError(
                    "role",
                    f"Unsupported value: {role!r}: supported values: " + ", ".join(API_ROLES),
                )
            )
        if errs:
            raise ValidationError(ResourceKey.of("ApiToken", None, name or None), errs)
        secret = new_secret()
        creator: Principal = request[PRINCIPAL]
        token = ApiToken(name, role, digest(secret), audit_time(_now()), creator.user)
        obj = {"kind": "ApiToken", "namespace": "", "name": name, "role": role}
        self.store.add_api_token(token, self._audit(request, "create", [obj]))
        return respond(request, {"kind": "ApiToken", **token.public(), "token": secret}, 201)

    async def delete_api_token(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        obj = {"kind": "ApiToken", "namespace": "", "name": name}
        removed = self.store.remove_api_token(name, self._audit(request, "delete", [obj]))
        return respond(request, {"kind": "ApiToken", **removed.public(), "result": "deleted"})

    async def audit_log(self, request: web.Request) -> web.Response:
        def number(name: str) -> int | None:
            raw = request.query.get(name)
            if raw is None:
                return None
            if not raw.isdigit():
                raise ValidationError(
                    ResourceKey.of("request"),
                    [FieldError(name, f"Invalid value: {raw!r}: not a whole number")],
                )
            return int(raw)

        entries = self.store.audit_log(after=number("after") or 0, limit=number("limit"))
        return respond(request, {"kind": "AuditList", "items": [e.public() for e in entries]})

    # -- kind resolution

    def _kind(self, request: web.Request) -> KindInfo:
        group = request.match_info.get("group", "")
        version = request.match_info["version"]
        plural = request.match_info["plural"]
        return kinds.by_path(group, version, plural)

    # -- collections

    async def collection(self, request: web.Request) -> web.StreamResponse:
        info = self._kind(request)
        ns = request.match_info.get("namespace")
        if request.method == "GET":
            if request.query.get("watch") in ("true", "1"):
                return await self._watch(request, info, ns)
            objs = [
                o
                for o in self.store.list(info.kind, ns if info.namespaced else None)
                if _match_labels(o.body, request.query.get("labelSelector"))
            ]
            return respond(request, list_body(info, objs, self.store.revision()))
        if request.method == "POST":
            body = await read_body(request)
            return self._write(request, info, ns, None, body, create=True)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    async def item(self, request: web.Request) -> web.StreamResponse:
        info = self._kind(request)
        ns = request.match_info.get("namespace") if info.namespaced else ""
        name = request.match_info["name"]
        key = Key(info.kind, ns or "", name)
        if request.method == "GET":
            obj = self.store.get(key)
            if obj is None:
                raise NotFoundError(f'{info.plural} "{name}" not found')
            return respond(request, object_body(obj))
        if request.method == "PUT":
            body = await read_body(request)
            return self._write(request, info, ns, name, body, create=False)
        if request.method == "DELETE":
            dry = request.query.get("dryRun") == "All"
            deleted = self._delete(request, [key], dry_run=dry)
            return respond(request, deleted[0])
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "DELETE"])

    def _write(
        self,
        request: web.Request,
        info: KindInfo,
        ns: str | None,
        name: str | None,
        body: Any,
        *,
        create: bool,
    ) -> web.Response:
        if not isinstance(body, dict):
            raise ValidationError(
                ResourceKey.of(info.kind), [FieldError("", "body must be an object")]
            )
        body.setdefault("kind", info.kind)
        body.setdefault("apiVersion", info.api_version)
        if body.get("metadata") is None:
            body["metadata"] = {}
        meta = body["metadata"]
        if not isinstance(meta, dict):
            raise ValidationError(
                ResourceKey.of(info.kind), [FieldError("metadata", "must be an object")]
            )
        if ns and info.namespaced:
            if meta.get("namespace") not in (None, ns):
                raise ValidationError(
                    ResourceKey.of(info.kind, meta.get("namespace"), meta.get("name")),
                    [
                        FieldError(
                            "metadata.namespace", f"does not match the namespace in the path ({ns})"
                        )
                    ],
                )
            meta["namespace"] = ns
        if name is not None and meta.get("name") not in (None, name):
            raise ValidationError(
                ResourceKey.of(info.kind, ns, meta.get("name")),
                [FieldError("metadata.name", f"does not match the name in the path ({name})")],
            )
        if name is not None:
            meta["name"] = name
        validated = self._validate(body, default_namespace=ns or "default")
        if validated.info.kind != info.kind:
            raise ValidationError(
                ResourceKey.of(validated.info.kind, ns, meta.get("name")),
                [FieldError("kind", f"must be {info.kind} for this path")],
            )
        rv = meta.get("resourceVersion")
        if rv and not str(rv).isdigit():
            raise ValidationError(
                ResourceKey.of(info.kind, ns, meta.get("name")),
                [FieldError("metadata.resourceVersion", f"Invalid value: {rv!r}: not a revision")],
            )
        expected = int(rv) if (rv and not create) else None
        self._check_namespaces([validated.body], set())
        self._check_telemetry_providers([validated.body])
        allocated = self._assign_cluster_ips([validated.body])
        put = Put(validated.body, expected_revision=expected, create_only=create)
        key = key_of(validated.body)
        if request.query.get("dryRun") == "All":
            return respond(request, validated.body, 201 if create else 200)
        if not create and self.store.get(key) is None:
            raise NotFoundError(f'{info.plural} "{key.name}" not found')
        verb = "create" if create else "update"
        audit = (
            self._audit(request, verb, [_ref(key, "created" if create else "configured")])
            if _audited(key.kind, verb)
            else None
        )
        self._commit_allocated([put], audit, allocated)
        stored = self.store.get(key)
        assert stored is not None
        return respond(request, stored.body, 201 if create else 200)

    # -- batches

    def _check_namespaces(self, bodies: list[dict[str, Any]], creating: set[str]) -> None:
        errors: list[ValidationError] = []
        for b in bodies:
            info = kinds.by_kind(b["kind"])
            ns = (b.get("metadata") or {}).get("namespace") or ""
            if (
                info.namespaced
                and ns not in creating
                and self.store.get(Key("Namespace", "", ns)) is None
            ):
                errors.append(
                    ValidationError(
                        ResourceKey.of(info.kind, ns, b["metadata"].get("name")),
                        [
                            FieldError(
                                "metadata.namespace",
                                f'namespaces "{ns}" not found (create it first: '
                                f"pilotfish create namespace {ns})",
                            )
                        ],
                    )
                )
        if errors:
            raise BatchError(errors)

    async def apply_batch(self, request: web.Request) -> web.Response:
        """Validate every item, then store all of them in one transaction (or nothing)."""
        req = _request_fields(
            await read_body(request),
            {"items": list, "sources": list, "namespace": str},
        )
        items: list[Any] = list(req.get("items") or [])
        sources = _sources(req.get("sources"), len(items))
        default_ns = req.get("namespace") or "default"
        dry_run = bool(req.get("dryRun")) or request.query.get("dryRun") == "All"
        diff = bool(req.get("diff")) or request.query.get("diff") == "true"
        if diff and not dry_run:
            return error_response(
                request,
                ValidationError(
                    ResourceKey.of("request"),
                    [FieldError("diff", "Invalid value: needs dryRun (nothing is stored)")],
                ),
            )
        validated: list[dict[str, Any]] = []
        warnings: list[str] = []
        errors: list[PilotfishError] = []
        for i, item in enumerate(items):
            src = sources[i] if i < len(sources) else None
            try:
                if not isinstance(item, dict):
                    raise ValidationError(
                        ResourceKey.of("document"), [FieldError("", "not a mapping")], src
                    )
                v = self._validate(item, source=src, default_namespace=default_ns)
                if not v.info.appliable:
                    raise ValidationError(
                        ResourceKey.of(
                            v.info.kind,
                            v.body["metadata"].get("namespace"),
                            v.body["metadata"]["name"],
                        ),
                        [
                            FieldError(
                                "kind",
                                f"{v.info.plural} are created by the runtime; "
                                "apply a Deployment instead",
                            )
                        ],
                        src,
                    )
                validated.append(v.body)
                meta = v.body["metadata"]
                ref = ResourceKey.of(v.info.kind, meta.get("namespace"), meta["name"])
                warnings.extend(f"{ref}: {w}" for w in v.warnings)
            except PilotfishError as e:
                errors.append(e)
        if errors:
            return _batch_error_response(request, errors)
        creating = {b["metadata"]["name"] for b in validated if b["kind"] == "Namespace"}
        try:
            self._check_namespaces(validated, creating)
            self._check_telemetry_providers(validated)
        except BatchError as e:
            return _batch_error_response(request, list(e.errors))
        warnings.extend(self._custom_provider_warnings(validated))
        allocated = self._assign_cluster_ips(validated)
        self._keep_status(validated)
        # One object given twice in one batch: the last one wins, as sequential applies would.
        last: dict[Key, int] = {key_of(b): i for i, b in enumerate(validated)}
        results: list[dict[str, Any]] = []
        ops: list[Operation] = []
        for i, b in enumerate(validated):
            k = key_of(b)
            if last[k] == i:
                ops.append(Put(b))
        if dry_run:
            self._check_dry_run(ops, allocated)
            commit = CommitResult(self.store.revision(), [])
            changed = {
                key_of(op.body) for op in ops if isinstance(op, Put) and self._differs(op.body)
            }
        else:
            # Which objects the batch changes is known only once committed: the audit entry
            # lists what the batch holds; the commit's events are what changed.
            audit = self._audit(
                request,
                "apply",
                [_ref(key_of(op.body), "applied") for op in ops if isinstance(op, Put)],
            )
            commit = self._commit_allocated(ops, audit, allocated)
            changed = {e.object.key for e in commit.events}
        for b in validated:
            k = key_of(b)
            existed = self._existed(k, commit) if not dry_run else self.store.get(k) is not None
            result = "unchanged"
            if k in changed:
                result = "configured" if existed else "created"
            results.append(
                {"kind": k.kind, "namespace": k.namespace, "name": k.name, "result": result}
            )
        out: dict[str, Any] = {
            "kind": "ApplyResult",
            "revision": commit.revision,
            "warnings": warnings,
            "dryRun": dry_run,
            "items": results,
        }
        if diff:
            preview = self.settings.config_preview
            if preview is None:
                raise PilotfishError("this API server has no xDS server: no config preview")
            puts = [op.body for op in ops if isinstance(op, Put) and key_of(op.body) in changed]
            out["proxies"] = await asyncio.to_thread(preview, puts, [])
        return respond(request, out)

    def _custom_provider_warnings(self, bodies: list[dict[str, Any]]) -> list[str]:
        """CUSTOM AuthorizationPolicies whose provider leaves TCP unchecked (cross-resource)."""
        policies = [b for b in bodies if b.get("kind") == "AuthorizationPolicy"]
        if not policies:
            return []
        mesh = mesh_config_of(self.store, [b for b in bodies if b.get("kind") == "IstioOperator"])
        out = []
        for body in policies:
            meta = body["metadata"]
            ref = ResourceKey.of("AuthorizationPolicy", meta.get("namespace"), meta["name"])
            spec = AuthorizationPolicySpec.model_validate(body.get("spec") or {})
            out += [f"{ref}: {w}" for w in custom_provider_warnings(spec, mesh)]
        return out

    def _check_telemetry_providers(self, bodies: list[dict[str, Any]]) -> None:
        """Telemetry may only name providers the mesh config defines (cross-resource)."""
        telemetry = [b for b in bodies if b.get("kind") == "Telemetry"]
        if not telemetry:
            return
        mesh = mesh_config_of(self.store, [b for b in bodies if b.get("kind") == "IstioOperator"])
        errors = []
        for body in telemetry:
            found = telemetry_provider_errors(Telemetry.model_validate(body), mesh)
            if found:
                meta = body["metadata"]
                errors.append(
                    ValidationError(
                        ResourceKey.of("Telemetry", meta.get("namespace"), meta["name"]), found
                    )
                )
        if errors:
            raise BatchError(errors)

    def _assign_cluster_ips(self, bodies: list[dict[str, Any]]) -> dict[tuple[Key, str], str]:
        """Give each Service without ``spec.clusterIP`` a stable VIP, as Kubernetes does.

        An update keeps the address the Service already has. Returns what was allocated here:
        ``(object key, address) -> hostname``, for ``_commit_allocated``.
        """
        allocated = self._assign_entry_addresses(bodies)
        services = [b for b in bodies if b["kind"] == "Service"]
        if not services:
            return allocated
        vips, suffix = self.settings.vips, self.settings.domain_suffix
        # Addresses already chosen (stored, or written in this batch) are never handed out.
        chosen = [(o.name, o.namespace, o.body) for o in self.store.list("Service")]
        chosen += [(b["metadata"]["name"], b["metadata"]["namespace"], b) for b in services]
        for name, namespace, body in chosen:
            ip = (body.get("spec") or {}).get("clusterIP")
            if ip and ip != "None":
                vips.reserve(service_fqdn(name, namespace, suffix), str(ip))
        for b in services:
            spec = b.setdefault("spec", {})
            if not spec.get("clusterIP"):
                meta = b["metadata"]
                host = service_fqdn(meta["name"], meta["namespace"], suffix)
                spec["clusterIP"] = vips.allocate(host)
                allocated[(key_of(b), spec["clusterIP"])] = host
        return allocated

    def _assign_entry_addresses(self, bodies: list[dict[str, Any]]) -> dict[tuple[Key, str], str]:
        """Give each host of a ServiceEntry without ``spec.addresses`` a VIP in
        ``status.addresses`` (``{value, host}``), as Istio's DNS auto-allocation does: the
        local runtime puts it in the pods' hosts files and sidecars capture it. Wildcard hosts
        get none. The registry reads the addresses back, so they survive restarts."""
        vips = self.settings.vips
        allocated: dict[tuple[Key, str], str] = {}
        for b in bodies:
            if b["kind"] != "ServiceEntry":
                continue
            spec = b.get("spec") or {}
            if spec.get("addresses"):
                b.pop("status", None)
                continue
            hosts = [str(h) for h in spec.get("hosts") or [] if not str(h).startswith("*")]
            if not hosts:
                continue
            status = b.setdefault("status", {})
            status["addresses"] = [{"value": vips.allocate(h), "host": h} for h in hosts]
            for a in status["addresses"]:
                allocated[(key_of(b), a["value"])] = a["host"]
        return allocated

    def _commit_allocated(
        self,
        ops: list[Operation],
        audit: AuditEntry | None,
        allocated: dict[tuple[Key, str], str],
    ) -> CommitResult:
        """Commit ``ops``; when the store refuses an address allocated here because another
        object took it meanwhile (another control plane allocated it for a colliding
        hostname), take the next free address and commit again. A ``clusterIP`` the user
        chose that another object holds is refused, naming the field and the holder."""
        bodies = {key_of(op.body): op.body for op in ops if isinstance(op, Put)}
        # Each refusal settles one address for good: one attempt per allocation, and some
        # for other control planes taking the next choices meanwhile.
        attempts = len(allocated) + _ADDRESS_RETRIES
        for _ in range(attempts):
            try:
                return self.store.commit(ops, audit=audit)
            except AddressTakenError as e:
                host = allocated.pop((e.key, e.address), None)
                if host is None:
                    raise _address_taken(e) from None
                holder = e.holder_host
                if e.holder.kind == "Service":
                    holder = service_fqdn(
                        e.holder.name, e.holder.namespace, self.settings.domain_suffix
                    )
                new = self.settings.vips.reassign(host, e.address, holder)
                body = bodies[e.key]
                if e.key.kind == "Service":
                    body["spec"]["clusterIP"] = new
                else:
                    for a in body["status"]["addresses"]:
                        if a["value"] == e.address and a["host"] == host:
                            a["value"] = new
                allocated[(e.key, new)] = host
        raise StoreError(
            f"no free VIP found after {attempts} attempts: other control planes "
            "keep taking the addresses chosen; apply again"
        )

    def _check_dry_run(self, ops: list[Operation], allocated: dict[tuple[Key, str], str]) -> None:
        """What the store's commit would refuse of ``ops``, without writing: a ``clusterIP``
        the user chose that another object holds (an address allocated here is not refused:
        the real apply takes the next free one)."""

        def holders(addresses: set[str]) -> list[StoredObject]:
            return [o for kind in HOLDER_KINDS for o in self.store.list(kind)]

        try:
            plan_commit(ops, self.store.get, self.store.revision(), holders=holders)
        except AddressTakenError as e:
            if (e.key, e.address) not in allocated:
                raise _address_taken(e) from None

    def _keep_status(self, bodies: list[dict[str, Any]]) -> None:
        """An apply of a kind whose status a controller writes (Canary) keeps that status, as
        Kubernetes' status subresource does: the applied manifest has none."""
        for b in bodies:
            if not kinds.by_kind(b["kind"]).keeps_status or "status" in b:
                continue
            current = self.store.get(key_of(b))
            if current is not None and "status" in current.body:
                b["status"] = current.body["status"]

    def _differs(self, body: dict[str, Any]) -> bool:
        cur = self.store.get(key_of(body))
        return cur is None or strip_server_fields(cur.body) != strip_server_fields(body)

    @staticmethod
    def _existed(k: Key, commit: CommitResult) -> bool:
        for e in commit.events:
            if e.object.key == k:
                return e.type != "ADDED"
        return True

    async def delete_batch(self, request: web.Request) -> web.Response:
        req = _request_fields(await read_body(request), {"items": list, "namespace": str})
        keys: list[Key] = []
        bad = [
            FieldError(f"items[{i}]", "Invalid value: must be an object with kind and name")
            for i, it in enumerate(req.get("items") or [])
            if not (isinstance(it, dict) and it.get("kind") and it.get("name"))
            or not isinstance(it.get("namespace") or "", str)
        ]
        if bad:
            raise ValidationError(ResourceKey.of("request"), bad)
        for it in req.get("items") or []:
            info = kinds.lookup(str(it["kind"]))
            ns = (
                (it.get("namespace") or req.get("namespace") or "default")
                if info.namespaced
                else ""
            )
            keys.append(Key(info.kind, ns, str(it["name"])))
        ignore_missing = bool(req.get("ignoreNotFound"))
        dry_run = bool(req.get("dryRun")) or request.query.get("dryRun") == "All"
        if ignore_missing:
            keys = [k for k in keys if self.store.get(k) is not None]
        deleted = self._delete(request, keys, dry_run=dry_run)
        return respond(request, {"kind": "DeleteResult", "dryRun": dry_run, "items": deleted})

    def _delete(
        self, request: web.Request, keys: list[Key], *, dry_run: bool
    ) -> list[dict[str, Any]]:
        ops: list[Operation] = []
        out: list[dict[str, Any]] = []
        seen: set[Key] = set()
        for k in keys:
            if k in seen:
                continue
            seen.add(k)
            info = kinds.by_kind(k.kind)
            if self.store.get(k) is None:
                raise NotFoundError(f'{info.plural} "{k.name}" not found')
            if k.kind == "Namespace":
                if k.name == "default":
                    raise ValidationError(
                        ResourceKey.of("Namespace", None, k.name),
                        [FieldError("metadata.name", "the default namespace cannot be deleted")],
                    )
                for obj in self.store.list(None, k.name):
                    if obj.key not in seen and kinds.by_kind(obj.kind).namespaced:
                        seen.add(obj.key)
                        ops.append(Delete(obj.key))
            ops.append(Delete(k))
            out.append(
                {"kind": k.kind, "namespace": k.namespace, "name": k.name, "result": "deleted"}
            )
        if ops and not dry_run:
            gone = [_ref(op.key, "deleted") for op in ops if isinstance(op, Delete)]
            gone = [g for g in gone if _audited(g["kind"], "delete")]
            audit = self._audit(request, "delete", gone) if gone else None
            self.store.commit(ops, audit=audit)
        return out

    # -- watch

    async def _watch(
        self, request: web.Request, info: KindInfo, ns: str | None
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
            task.add_done_callback(self._watches.discard)
        rv = request.query.get("resourceVersion")
        selector = request.query.get("labelSelector")
        if rv:
            start = int(rv)
        else:
            start = self.store.revision()
            for o in self.store.list(info.kind, ns if info.namespaced else None):
                if _match_labels(o.body, selector):
                    await resp.write(_event_line("ADDED", o.body))
        try:
            async for ev in watch(self.store, start):
                o = ev.object
                if o.kind != info.kind or (ns and info.namespaced and o.namespace != ns):
                    continue
                if not _match_labels(o.body, selector):
                    continue
                await resp.write(_event_line(ev.type, o.body))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp


class BatchError(PilotfishError):
    def __init__(self, errors: list[ValidationError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def _batch_error_response(request: web.Request, errors: list[PilotfishError]) -> web.Response:
    bodies = [error_status(e) for e in errors]
    code = max(int(b["code"]) for b in bodies)
    causes: list[dict[str, str]] = []
    for b in bodies:
        causes.extend((b.get("details") or {}).get("causes") or [])
    message = "\n".join(str(e) for e in errors)
    body = status_body(
        code, "Invalid" if code == 422 else str(bodies[0]["reason"]), message, causes
    )
    body["details"] = {**body.get("details", {}), "errors": [str(e) for e in errors]}
    return respond(request, body, code)


def _event_line(kind: str, body: dict[str, Any]) -> bytes:
    return (json.dumps({"type": kind, "object": body}) + "\n").encode()


def _address_taken(e: AddressTakenError) -> ValidationError:
    """A user's address that another object holds, refused naming the field and the holder."""
    field = "spec.clusterIP" if e.key.kind == "Service" else "status.addresses"
    return ValidationError(
        e.key,
        [
            FieldError(
                field,
                f"Invalid value: {e.address!r}: provided IP is already allocated to {e.holder}",
            )
        ],
    )
