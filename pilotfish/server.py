"""The composition root of the control plane: the only place that wires parts together.

``run_server`` opens the config store, makes sure the built-in namespaces exist, creates the
admin token, serves the HTTP API and the xDS server, and feeds store changes through the
push pipeline (store events -> PushContext -> xDS push). It stops cleanly on SIGTERM/SIGINT.

xDS and the CA share one gRPC port (15012), served over TLS by default with a certificate from
the mesh CA (see :mod:`pilotfish.server_identity`); the mesh roots agents verify it with are
written to ``<data-dir>/ca/mesh-roots.pem`` before the API answers, so whoever waits for
``/healthz`` finds them. ``xds_tls=False`` (``--xds-plaintext``) is for tests and trusted
loopback setups.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import json_format

from pilotfish import __version__, memreport
from pilotfish.api.mesh import API_PORT, XDS_PORT
from pilotfish.api.meshconfig import IPNetwork, blocked_cidrs_in_jwks_uris, parse_cidrs
from pilotfish.api.node import NodeInfo
from pilotfish.apiserver.app import ApiServer, ApiSettings, ensure_builtin_namespaces
from pilotfish.apiserver.auth import load_or_create_admin_token
from pilotfish.apiserver.ca_routes import add_ca_routes
from pilotfish.apiserver.tokens import add_token_routes
from pilotfish.apiserver.worker import (
    SOCKET_DIR_PREFIX,
    ApiWorker,
    ApiWorkerError,
    WorkerConfig,
)
from pilotfish.canary import CanaryController, ControllerSettings, HttpChecks
from pilotfish.config.addons import ensure_addon_services
from pilotfish.config.store import Store, open_store
from pilotfish.config.store.base import Key
from pilotfish.config.store.factory import describe as describe_store
from pilotfish.config.store.factory import is_postgres, url_scheme
from pilotfish.contextfile import DEFAULT_HOME, Context, save_context
from pilotfish.dashboard.app import DEFAULT_PORT as DASHBOARD_PORT
from pilotfish.dashboard.app import Dashboard, DashboardSettings, add_dashboard_routes
from pilotfish.errors import PilotfishError, StoreError
from pilotfish.heap import trim_heap
from pilotfish.identity.errors import TokenError
from pilotfish.model.jwks import JwksFetcher, JwksSettings
from pilotfish.model.push_context import MeshSettings, PushContext
from pilotfish.model.source import PushContextSource
from pilotfish.registry import Registry
from pilotfish.registry.autoregister import AutoRegistration, group_of, registration_problem
from pilotfish.registry.vip import VipAllocator
from pilotfish.server_identity import ControlPlaneIdentity, IdentitySettings
from pilotfish.telemetry.pilot import PilotMetrics
from pilotfish.translate import Resources, generate_config
from pilotfish.translate.dependencies import Changes, scope_for
from pilotfish.translate.explain import ExplainRequest, explain_request
from pilotfish.translate.generator import ALL_TYPES, outbound_view
from pilotfish.translate.route_configs import merge_vhds
from pilotfish.xds import (
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
    DiscoveryServer,
    PushRequest,
    XdsSettings,
)
from pilotfish.xds.push import Scope
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    Generated,
    on_demand_of,
    short_name,
)
from pilotfish.xds.secrets import secrets_for
from pilotfish.xds.server import SharedGeneration, StreamRefused

if TYPE_CHECKING:
    from pilotfish.telemetry import TraceCollector

log = logging.getLogger("pilotfish.server")

#: How long a sidecar registered by its xDS connection keeps its endpoint after the
#: connection closed (a reconnection within it changes nothing).
SIDECAR_RECONNECT_GRACE_S = 5.0
#: The same for the sidecars connected when the control plane stopped (or was killed), from
#: its start: Envoy retries its xDS stream with a jittered backoff of up to 30 s, and a live
#: sidecar must not vanish from every client meanwhile (a restart reconnects them all).
SIDECAR_RESTART_GRACE_S = 30.0
#: WorkloadEntry cleanup (auto-registration): each replica renews a heartbeat lease
#: ``replica/<its name>`` of this TTL every tick on a store with leases (PostgreSQL); the
#: leader (lease ``workloadentry-cleanup``) sweeps the entries of replicas whose heartbeat
#: lapsed. Without leases (SQLite) there is one replica: any other name is a former run.
ENTRY_HEARTBEAT_TTL_S = 10.0
ENTRY_CLEANUP_TICK_S = 2.0
ENTRY_CLEANUP_LEASE = "workloadentry-cleanup"
#: How often a control plane with a shared CA directory (``--ca-dir``) looks for the root
#: rotation steps another replica took there.
CA_FOLLOW_TICK_S = 1.0
#: In the data directory: the sidecars whose endpoint exists only through their connection,
#: as last connected (written within ``SIDECARS_RECORD_DELAY_S`` of a change).
SIDECARS_FILE = "connected-sidecars.json"
SIDECARS_RECORD_DELAY_S = 1.0
#: How old the endpoints of a proxy's generated config may be (seconds): sidecars that connect
#: or leave within this long share one push context instead of each rebuilding it (a storm of
#: reconnecting proxies rebuilds it a few times a second, not once per proxy); each of those
#: changes also asks for a push, which brings the endpoints to everyone within the debounce.
ENDPOINT_STALENESS_S = 0.5
#: The same while a connection storm is on (proxies wait in the connection throttle): each
#: context rebuilt costs the clusters of every view again (~40 ms at 1,000 services), and the
#: endpoint pushes to the proxies already connected wait for the storm's end anyway.
STORM_ENDPOINT_STALENESS_S = 2.0


def split_address(addr: str, default_port: int) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host:
        return addr or "127.0.0.1", default_port
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ServerSettings:
    data_dir: Path
    api_host: str
    api_port: int
    xds_host: str
    xds_port: int
    store_url: str
    context_name: str = "local"
    log_level: str = "info"
    #: Write a context for this server into the CLI config file.
    write_context: bool = True
    #: Plug-in CA files (Istio's ``cacerts``); ``<data_dir>/ca`` (self-signed root) when None.
    ca_dir: Path | None = None
    #: Serve xDS and the CA over TLS with a certificate from the mesh CA (False: plaintext,
    #: for tests and trusted loopback setups).
    xds_tls: bool = True
    #: Extra DNS names or IPs for the xDS serving certificate.
    xds_sans: tuple[str, ...] = ()
    #: Run the built-in trace collector (receivers on the xDS host, query API on loopback).
    trace_collector: bool = True
    #: Jaeger query API port of the trace collector (on 127.0.0.1).
    trace_query_port: int = 16686
    #: The mesh's Prometheus, queried by the canary controller.
    prometheus_url: str = "http://127.0.0.1:9090"
    #: Run the canary controller (Flagger's Canary).
    canary_controller: bool = True
    #: Where the web dashboard listens (Kiali's port); ``None``: no dashboard.
    dashboard_listen: str | None = "127.0.0.1:20001"
    #: xDS/CA connections are closed after this long (seconds, 0: never) so proxies spread
    #: over replicas again; open streams get ``max_connection_age_grace`` to finish.
    max_connection_age: float = 1800.0
    max_connection_age_grace: float = 10.0
    #: How long an auto-registered WorkloadEntry whose managing replica is gone (killed, or
    #: restarted as a new replica) waits for its agent to reconnect before it is deleted.
    workload_entry_cleanup_grace: float = SIDECAR_RESTART_GRACE_S
    #: Serve the HTTP API over TLS (``--api-tls``): with ``api_tls_cert``/``api_tls_key`` when
    #: given, else with a certificate from the mesh CA (clients verify it with the mesh roots).
    api_tls: bool = False
    api_tls_cert: Path | None = None
    api_tls_key: Path | None = None
    #: Serve the HTTP API from a worker process of its own (``apiserver.worker``): reads of
    #: config from the store there, the rest forwarded here, so the API answers while xDS
    #: is busy. False (``--no-api-worker``), or a ``memory://`` store: served in this process.
    api_worker: bool = True

    @classmethod
    def build(
        cls,
        *,
        data_dir: Path | None,
        listen: str,
        xds_listen: str,
        store_url: str | None,
        context_name: str = "local",
        log_level: str = "info",
        write_context: bool = True,
        ca_dir: Path | None = None,
        xds_tls: bool = True,
        xds_sans: tuple[str, ...] = (),
        trace_collector: bool = True,
        trace_query_port: int = 16686,
        prometheus_url: str = "http://127.0.0.1:9090",
        canary_controller: bool = True,
        dashboard_listen: str | None = "127.0.0.1:20001",
        max_connection_age: float = 1800.0,
        max_connection_age_grace: float = 10.0,
        workload_entry_cleanup_grace: float = SIDECAR_RESTART_GRACE_S,
        api_tls: bool = False,
        api_tls_cert: Path | None = None,
        api_tls_key: Path | None = None,
        api_worker: bool = True,
    ) -> ServerSettings:
        data_dir = (data_dir or DEFAULT_HOME / "data").expanduser().resolve()
        api_host, api_port = split_address(listen, API_PORT)
        xds_host, xds_port = split_address(xds_listen, XDS_PORT)
        return cls(
            data_dir=data_dir,
            api_host=api_host,
            api_port=api_port,
            xds_host=xds_host,
            xds_port=xds_port,
            store_url=store_url or str(data_dir / "config.db"),
            context_name=context_name,
            log_level=log_level,
            write_context=write_context,
            ca_dir=ca_dir.expanduser().resolve() if ca_dir else None,
            xds_tls=xds_tls,
            xds_sans=tuple(xds_sans),
            trace_collector=trace_collector,
            trace_query_port=trace_query_port,
            prometheus_url=prometheus_url,
            canary_controller=canary_controller,
            dashboard_listen=dashboard_listen or None,
            max_connection_age=max_connection_age,
            max_connection_age_grace=max_connection_age_grace,
            workload_entry_cleanup_grace=workload_entry_cleanup_grace,
            api_tls=api_tls or api_tls_cert is not None,
            api_tls_cert=api_tls_cert.expanduser().resolve() if api_tls_cert else None,
            api_tls_key=api_tls_key.expanduser().resolve() if api_tls_key else None,
            api_worker=api_worker,
        )

    @property
    def dashboard_url(self) -> str | None:
        if self.dashboard_listen is None:
            return None
        host, port = split_address(self.dashboard_listen, DASHBOARD_PORT)
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    @property
    def span_store_url(self) -> str | None:
        """Where the trace collector keeps spans: the config store's PostgreSQL database when
        replicas share one (so any replica answers queries), else None: ``traces.db`` in the
        data directory."""
        return self.store_url if is_postgres(self.store_url) else None

    @property
    def uses_api_worker(self) -> bool:
        """Whether the API is served by a worker process (it needs a store other processes
        can open: not ``memory://``)."""
        return self.api_worker and url_scheme(self.store_url) != "memory"

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "") else self.api_host
        return f"{'https' if self.api_tls else 'http'}://{host}:{self.api_port}"


def _scope_types(scope: Scope) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """The types a scoped generation builds (load assignments with clusters) and the names
    it narrows each type to."""
    types = set(scope)
    if CLUSTER_TYPE in types:
        types.add(ENDPOINT_TYPE)
    return frozenset(types), {t: n for t, n in scope.items() if n is not None}


def proxy_resources(
    node: NodeInfo,
    push: PushContext,
    types: frozenset[str] = ALL_TYPES,
    names: Mapping[str, frozenset[str]] | None = None,
) -> Resources:
    """Everything the control plane sends one proxy: translation's CDS, EDS, LDS and RDS, and
    the SDS secrets they name, resolved from the stored Secrets by the xDS secrets generator.
    ``push`` must have been built with ``credentials=secrets_for``, so translation's view of
    which credentials are available is the generator's. ``types`` limits the work to those
    types (the others come back empty), ``names`` to those names of a type where translation
    can (see ``generate_config``)."""
    config = generate_config(node, push, types, names)
    resources = dict(config.resources)
    if SECRET_TYPE in types:
        resources[SECRET_TYPE] = dict(secrets_for(push).generate(node, config.secret_names))
    if config.on_demand or config.directory is not None:
        on_demand = {CLUSTER_TYPE: config.on_demand, VIRTUAL_HOST_TYPE: config.on_demand_vhosts}
        return Generated(resources, on_demand, directory=config.directory)
    return resources


def config_as_json(resources: Resources) -> dict[str, list[dict[str, Any]]]:
    """Generated resources as JSON lists keyed ``clusters``, ``endpoints``, ``listeners``,
    ``routes`` (VHDS virtual hosts inside their route configs) and ``extension_configs``.
    Secrets are left out: gateway credentials carry private keys."""
    keys = {
        "CDS": "clusters",
        "EDS": "endpoints",
        "LDS": "listeners",
        "RDS": "routes",
        "ECDS": "extension_configs",
    }
    out: dict[str, list[dict[str, Any]]] = {}
    vhosts = resources.get(VIRTUAL_HOST_TYPE)
    if vhosts:
        # VHDS: each route config as Envoy holds it, its virtual hosts merged in.
        resources = {**resources, ROUTE_TYPE: merge_vhds(resources.get(ROUTE_TYPE, {}), vhosts)}
    for type_url, by_name in resources.items():
        key = keys.get(short_name(type_url))
        if key is None:
            continue
        out[key] = [
            json_format.MessageToDict(by_name[name], preserving_proto_field_name=True)
            for name in sorted(by_name)
        ]
    return out


#: The types a config preview regenerates and shows (never secrets: they carry keys).
PREVIEW_TYPES = frozenset(t for t in ALL_TYPES if t != SECRET_TYPE)


def _json_diff(before: list[dict[str, Any]], after: list[dict[str, Any]], label: str) -> str:
    """A unified diff of two lists of Envoy resources, one JSON document per resource, in name
    order (empty when they are the same). Pure."""

    def lines(resources: list[dict[str, Any]]) -> list[str]:
        return json.dumps(resources, indent=2, sort_keys=True).splitlines()

    a, b = lines(before), lines(after)
    if a == b:
        return ""
    diff = difflib.unified_diff(a, b, f"{label} (now)", f"{label} (after the change)", lineterm="")
    return "\n".join(diff) + "\n"


class Mesh:
    """The running control plane's parts, wired: store -> registry/model -> translate -> xDS."""

    def __init__(
        self,
        store: Store,
        settings: ServerSettings,
        identity: ControlPlaneIdentity | None = None,
    ) -> None:
        self.store = store
        self.identity = identity
        self.data_dir = settings.data_dir
        #: The one VIP allocator: the registry's (Services, ServiceEntries) and the API's
        #: (``clusterIP`` of applied Services).
        self.vips = VipAllocator()
        self.registry = Registry(vips=self.vips)
        #: WorkloadEntries of agents that register into a WorkloadGroup when they connect.
        self.autoregistration = AutoRegistration(
            store, f"{socket.gethostname()}:{os.getpid()}:{settings.xds_port}"
        )
        #: Istio's pilot series for ``/metrics`` (this control plane's own registry).
        self.metrics = PilotMetrics(__version__, connections=lambda: self.xds.connections())
        #: Keys of RequestAuthentication jwksUri rules, fetched here and inlined by translate.
        self.jwks = JwksFetcher(JwksSettings(), on_change=self._jwks_changed)
        self._jwks_blocked_task: asyncio.Task[None] | None = None
        self._jwks_blocked_dirty = False
        #: Secrets are read by the xDS secrets generator only; translation asks it which
        #: credentials are available.
        self.source = PushContextSource(
            store, self.registry, MeshSettings(), jwks=self.jwks.jwks, credentials=secrets_for
        )
        self.xds = DiscoveryServer(
            XdsSettings(
                address=f"{settings.xds_host}:{settings.xds_port}",
                tls=identity.xds_tls() if identity is not None else None,
                max_connection_age=settings.max_connection_age,
                max_connection_age_grace=settings.max_connection_age_grace,
            ),
            self.generate,
            on_connect=self._connected,
            on_disconnect=self._disconnected,
            extra_services=[identity.add_to_server] if identity is not None else [],
            metrics=self.metrics,
            planner=self.plan,
            prepare=self.prepare,
            scoped_generator=self.generate_scope,
            scoped_view=self.scoped_view,
            admit=self._admit,
            on_health=self._health,
        )
        self._unsubscribe: list[Callable[[], None]] = []
        self._generated: dict[str, tuple[int, float]] = {}
        #: The context the last push was planned from (changes are measured against it).
        self._planned: PushContext | None = None
        #: The context the next plan compares with ``_planned`` (built by ``prepare``).
        self._prepared: PushContext | None = None
        #: See ``ENDPOINT_STALENESS_S`` and ``STORM_ENDPOINT_STALENESS_S``.
        self.endpoint_staleness = ENDPOINT_STALENESS_S
        self.storm_endpoint_staleness = STORM_ENDPOINT_STALENESS_S
        self._record_pending = False

    def _admit(self, node: NodeInfo, metadata: Mapping[str, Any]) -> None:
        """A proxy asking to register into a WorkloadGroup must show a workload token bound to
        that group, for the group's namespace and service account (``authorization: Bearer``
        on its xDS stream); otherwise its stream is refused, as Istio refuses it."""
        group = group_of(node)
        if not group or self.identity is None:
            return
        where = f"WorkloadGroup {node.namespace}/{group}"
        auth = metadata.get("authorization", "")
        auth = auth.decode() if isinstance(auth, bytes) else str(auth)
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise StreamRefused(
                f"{node.node_id} asks to register into {where} without a workload token: start "
                "it with --token-file (a token from `pilotfish x workload entry configure` or "
                f"`pilotfish token create --service-account SA --workload-group {group}`)"
            )
        try:
            claims = self.identity.workload_token_claims(token.strip())
        except (TokenError, ValueError) as exc:
            raise StreamRefused(f"{node.node_id} may not register into {where}: {exc}") from None
        body = self.store.get(Key("WorkloadGroup", node.namespace, group))
        problem = registration_problem(
            node,
            body.body if body is not None else None,
            claims.namespace,
            claims.service_account,
            claims.workload_group,
        )
        if problem:
            raise StreamRefused(f"{node.node_id} may not register into {where}: {problem}")

    def _connected(self, node: NodeInfo) -> None:
        self.registry.sidecars.connected(node)
        if group_of(node):
            # The store is quick and synchronous; the entry must exist before the proxy's
            # first config is generated, so that its labels select it into services.
            self.autoregistration.connected(node)

    def _health(self, node: NodeInfo, healthy: bool, message: str) -> None:
        if group_of(node):
            self.autoregistration.health(node, healthy, message)

    def _left(self, node: NodeInfo) -> None:
        self.registry.sidecars.disconnected(node)
        if group_of(node) and not self.registry.sidecars.is_connected(node):
            self.autoregistration.left(node, node.pod_name)

    def _disconnected(self, node: NodeInfo) -> None:
        # A sidecar's endpoint stays for a grace period after its xDS connection closed: it
        # reconnects, to this replica or another, when a connection reaches its maximum age
        # or a replica dies, and its endpoint must not vanish from every client meanwhile.
        # A captured sidecar is a pod's (the runtime's, or a host's): its Pod object carries
        # its endpoint while it lives, and when the pod is deleted its sidecar's entry must
        # go at once, or clients keep dialling an address that is gone. The grace is for
        # sidecars in explicit mode, whose endpoint exists only through their connection.
        # An auto-registered workload (WorkloadGroup) keeps its WorkloadEntry for the grace too,
        # whatever its interception mode: its entry exists only through its connection.
        if node.interception_mode != "NONE" and not group_of(node):
            self.registry.sidecars.disconnected(node)
            return
        loop = asyncio.get_running_loop()
        loop.call_later(SIDECAR_RECONNECT_GRACE_S, self._left, node)

    def generate(self, node: NodeInfo) -> Resources:
        return self.generate_types(node, ALL_TYPES)

    def generate_types(
        self,
        node: NodeInfo,
        types: frozenset[str],
        names: Mapping[str, frozenset[str]] | None = None,
    ) -> Resources:
        context = self._context()
        self._at_revision(node.node_id, context.revision)
        return proxy_resources(node, context, types, names)

    def _context(self) -> PushContext:
        # Sidecars connecting or leaving within ``endpoint_staleness`` share one context; the
        # push each of those changes asks for brings its endpoints (see ``prepare``).
        storm = self.xds.in_storm()
        return self.source.current(
            self.storm_endpoint_staleness if storm else self.endpoint_staleness
        )

    def generate_scope(self, node: NodeInfo, scope: Scope) -> Resources:
        """The resources a scoped push compares: the types in ``scope`` (load assignments
        with clusters), narrowed to the names it gives where translation can."""
        types, names = _scope_types(scope)
        return self.generate_types(node, types, names)

    def scoped_view(self, node: NodeInfo, scope: Scope) -> SharedGeneration | None:
        """For a push of outbound clusters and load assignments only (endpoint changes): a
        key shared by the proxies whose generation of ``scope`` gives the same resources (one
        view, one context) and that generation; None when not sure."""
        if any(n is None for n in scope.values()):
            return None
        context = self._context()
        types, names = _scope_types(scope)
        view = outbound_view(node, context, names)
        if view is None:
            return None
        self._at_revision(node.node_id, context.revision)
        # Weakly: the key does not keep an older context (and what it memoized) alive.
        return (weakref.ref(context), view), partial(proxy_resources, node, context, types, names)

    def _at_revision(self, node_id: str, revision: int) -> None:
        # The config revision each proxy's latest config was generated from, or found
        # unaffected at (`pilotfish wait`).
        old = self._generated.get(node_id)
        if old is None or old[0] <= revision:
            self._generated[node_id] = (revision, time.monotonic())

    def prepare(self) -> None:
        """Before a push lists the connected proxies: the context with every change so far.
        A proxy that connects after the listing is generated from it or a newer one, and
        those listed get what changed since the last plan, so none misses a change even when
        its first config came from a context that lacked the latest endpoints."""
        self._prepared = self.source.current()

    def plan(self, request: PushRequest, nodes: Sequence[NodeInfo]) -> Mapping[str, Scope | None]:
        """Which connected proxies a push reaches and what of each to regenerate: every proxy
        and everything for a full request (or the first one), else what the changes since the
        last plan can touch (``translate.dependencies``). Proxies left out are recorded at the
        new revision: nothing they receive changed."""
        new, self._prepared = self._prepared or self.source.current(), None
        old, self._planned = self._planned, new
        if request.full or old is None:
            return dict.fromkeys((n.node_id for n in nodes), None)
        changes = Changes.between(old, new)
        plans: dict[str, Scope | None] = {}
        for node in nodes:
            scope = scope_for(node, changes) if not changes.empty else None
            if scope is None:
                self._at_revision(node.node_id, new.revision)
            else:
                plans[node.node_id] = scope
        log.debug(
            "push for %s reaches %d of %d proxies", changes.describe(), len(plans), len(nodes)
        )
        return plans

    def _jwks_changed(self) -> None:
        self.source.invalidate()
        self.xds.push(PushRequest.of("jwks"))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def changed(reason: str) -> None:
            # Not full: the planner reaches the proxies the changes can touch.
            self.source.invalidate(endpoints_only=reason == "endpoint")
            self.xds.push(PushRequest.of(reason, full=False))

        def on_commit(_revision: int) -> None:
            loop.call_soon_threadsafe(changed, "config")
            loop.call_soon_threadsafe(self._schedule_jwks_blocked)

        def on_endpoints() -> None:
            # Sidecars connecting or leaving: the registry's endpoints only.
            loop.call_soon_threadsafe(changed, "endpoint")

        self._restore_sidecars()
        self._unsubscribe.append(self.store.subscribe(on_commit))
        self._unsubscribe.append(self.registry.sidecars.subscribe(on_endpoints))

        def on_sidecars() -> None:
            loop.call_soon_threadsafe(self._schedule_sidecar_record)

        self._unsubscribe.append(self.registry.sidecars.subscribe(on_sidecars))
        self.jwks.set_blocked_cidrs(await asyncio.to_thread(self._jwks_blocked_cidrs))
        await self.jwks.start()
        await self.xds.start()

    @staticmethod
    def _by_connection(node: NodeInfo) -> bool:
        """A sidecar whose endpoint exists only through its xDS connection (explicit mode,
        not registered into a WorkloadGroup: captured ones have their Pod, grouped ones their
        WorkloadEntry in the store)."""
        return node.interception_mode == "NONE" and not group_of(node)

    def _restore_sidecars(self) -> None:
        """The sidecars connected when this control plane last ran keep their endpoint for
        ``SIDECAR_RESTART_GRACE_S``, as if each had just disconnected: the first
        configurations after a restart carry the endpoints of the proxies still to
        reconnect, instead of taking them away from every client until they do."""
        path = self.data_dir / SIDECARS_FILE
        try:
            records = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            log.warning("%s not read (%s): sidecars register as they reconnect", path, e)
            return
        loop = asyncio.get_running_loop()
        restored = 0
        for record in records if isinstance(records, list) else []:
            try:
                node = NodeInfo.from_node(str(record["id"]), dict(record["metadata"]))
            except (KeyError, TypeError, ValueError) as e:
                log.warning("%s: a record not restored (%s)", path, e)
                continue
            if not self._by_connection(node):
                continue
            self.registry.sidecars.connected(node)
            loop.call_later(SIDECAR_RESTART_GRACE_S, self._left, node)
            restored += 1
        if restored:
            log.info(
                "%d sidecars connected before the restart keep their endpoints for %.0f s",
                restored,
                SIDECAR_RESTART_GRACE_S,
            )

    def _jwks_blocked_cidrs(self) -> tuple[IPNetwork, ...]:
        """istiod's ``BLOCKED_CIDRS_IN_JWKS_URIS`` as the stored IstioOperators set it
        (``values.pilot.env``; validation refuses a value that is not CIDRs)."""
        text = blocked_cidrs_in_jwks_uris(o.body for o in self.store.list("IstioOperator"))
        try:
            return parse_cidrs(text)
        except ValueError as e:
            log.warning("values.pilot.env.BLOCKED_CIDRS_IN_JWKS_URIS ignored: %s", e)
            return ()

    def _schedule_jwks_blocked(self) -> None:
        """After a commit (once per burst): the blocked CIDRs of the JWKS fetcher."""
        self._jwks_blocked_dirty = True
        if self._jwks_blocked_task is None or self._jwks_blocked_task.done():
            self._jwks_blocked_task = asyncio.get_running_loop().create_task(
                self._update_jwks_blocked()
            )

    async def _update_jwks_blocked(self) -> None:
        while self._jwks_blocked_dirty:  # a commit during the read is read again
            self._jwks_blocked_dirty = False
            try:
                self.jwks.set_blocked_cidrs(await asyncio.to_thread(self._jwks_blocked_cidrs))
            except Exception:  # the store may be closing; the next commit reads it again
                log.exception("reading BLOCKED_CIDRS_IN_JWKS_URIS failed")

    def _schedule_sidecar_record(self) -> None:
        if not self._record_pending:
            self._record_pending = True
            asyncio.get_running_loop().call_later(SIDECARS_RECORD_DELAY_S, self._record_sidecars)

    def _record_sidecars(self) -> None:
        self._record_pending = False
        records = [
            {"id": n.node_id, "metadata": n.metadata()}
            for n in self.registry.sidecars.nodes()
            if self._by_connection(n)
        ]
        path = self.data_dir / SIDECARS_FILE
        try:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(records))
            os.replace(tmp, path)
        except OSError as e:
            log.warning("%s not written: %s", path, e)

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        await self.xds.stop()
        await self.jwks.stop()

    def proxy_status(self) -> list[dict[str, Any]]:
        """Each connected proxy's xDS state, with ``config_revision``: the config revision its
        latest config was generated from (once it is ``synced``, it ACKed or NACKed that)."""
        out = []
        statuses = self.xds.status()
        for s in statuses:
            item = s.to_dict()
            generated = self._generated.get(s.node_id)
            item["config_revision"] = generated[0] if generated is not None else None
            out.append(item)
        # Forget proxies gone for a minute (a reconnecting one keeps its entry).
        connected, old = {s.node_id for s in statuses}, time.monotonic() - 60
        for node_id, (_, at) in list(self._generated.items()):
            if node_id not in connected and at < old:
                self._generated.pop(node_id, None)
        return out

    def config_preview(
        self, puts: Sequence[dict[str, Any]], deletes: Sequence[Key] = ()
    ) -> list[dict[str, Any]]:
        """What writing ``puts`` (and deleting ``deletes``) would change in each connected
        proxy's Envoy config, computed without storing anything: the proxies the push-scope
        rules reach (``translate.dependencies``), each with a unified diff per type of its
        clusters, listeners and routes (secrets are never shown), empty when its config would
        stay the same."""
        old, new = self.source.preview(puts, deletes)
        changes = Changes.between(old, new)
        out: list[dict[str, Any]] = []
        if changes.empty:
            return out
        for node in sorted(self.xds.connected_nodes(), key=lambda n: (n.namespace, n.pod_name)):
            scope = scope_for(node, changes)
            if scope is None:
                continue
            types = frozenset(scope) & PREVIEW_TYPES
            before = config_as_json(proxy_resources(node, old, types))
            after = config_as_json(proxy_resources(node, new, types))
            name = f"{node.pod_name}.{node.namespace}"
            diffs = {}
            for key in ("clusters", "listeners", "routes"):
                text = _json_diff(before.get(key, []), after.get(key, []), f"{name} {key}")
                if text:
                    diffs[key] = text
            out.append({"proxy": name, "namespace": node.namespace, "name": node.pod_name,
                        "diffs": diffs})  # fmt: skip
        return out

    def proxy_config(self, namespace: str, name: str) -> dict[str, list[dict[str, Any]]] | None:
        """What the control plane generates for a connected proxy, as JSON, by type; of the
        names sent on demand (clusters, virtual hosts), those the proxy asked for, and the
        fallback virtual hosts made for the hosts it asked for: what it should run."""
        for node in self.xds.connected_nodes():
            if node.namespace == namespace and node.pod_name == name:
                resources = proxy_resources(node, self.source.current())
                return config_as_json(self._as_held(node, resources))
        return None

    def _as_held(self, node: NodeInfo, resources: Resources) -> Resources:
        lazy = {t: n for t, n in on_demand_of(resources).items() if n}
        if not lazy:
            return resources
        out = dict(resources)
        for type_url, names in lazy.items():
            held = self.xds.held(node.node_id, type_url)
            if held is None:
                continue
            generated = resources.get(type_url, {})
            kept = {n: m for n, m in generated.items() if n not in names or n in held}
            if type_url == VIRTUAL_HOST_TYPE:
                for n, entry in held.items():
                    if n not in kept:  # a fallback made for a host the proxy asked for
                        kept[n] = route_components_pb2.VirtualHost.FromString(entry.any.value)
            out[type_url] = kept
        return out

    def explain(
        self, namespace: str, name: str, method: str, url: str, headers: dict[str, str]
    ) -> dict[str, Any] | None:
        """How the config the control plane generates would handle a request from a connected
        proxy, through the destination proxies' inbound config (``x explain``)."""
        nodes = self.xds.connected_nodes()
        for node in nodes:
            if node.namespace == namespace and node.pod_name == name:
                request = ExplainRequest(method, url, headers)
                return explain_request(self.source.current(), nodes, node, request)
        return None


async def start_trace_collector(settings: ServerSettings, store: Store) -> TraceCollector | None:
    """The built-in trace collector, and the ``zipkin.istio-system`` ServiceEntry that lets
    Envoy's tracers (and apps) reach it under Istio's addon name. A collector that cannot
    start (a port taken, the span store unreachable) is logged with the reason; the control
    plane runs on without it. Spans go where ``settings.span_store_url`` says."""
    if not settings.trace_collector:
        return None
    from pilotfish.telemetry import CollectorSettings, TraceCollector

    host = settings.xds_host
    collector = TraceCollector(
        CollectorSettings(
            data_dir=settings.data_dir,
            host=host,
            query_port=settings.trace_query_port,
            store_url=settings.span_store_url,
        )
    )
    try:
        await collector.start()
    except (OSError, RuntimeError, StoreError) as exc:
        log.error("the trace collector did not start: %s (spans are not kept)", exc)
        return None
    if host not in ("0.0.0.0", "", "::"):
        ensure_addon_services(store, host)
    log.info(
        "trace collector: OTLP %s:4317 (gRPC) and :4318 (HTTP), Zipkin :9411, Jaeger query "
        "API 127.0.0.1:%d, spans in %s",
        host,
        settings.trace_query_port,
        describe_store(collector.settings.store_location),
    )
    return collector


def start_canary_controller(
    settings: ServerSettings, store: Store, vips: VipAllocator, stop: asyncio.Event
) -> tuple[asyncio.Task[None], HttpChecks] | None:
    """The canary controller (Flagger's Canary), on the leader when replicas share a store."""
    if not settings.canary_controller:
        return None
    checks = HttpChecks(settings.prometheus_url)
    holder = f"{socket.gethostname()}:{os.getpid()}:{settings.api_port}"
    controller = CanaryController(store, checks, ControllerSettings(holder=holder), vips=vips)
    task = asyncio.create_task(controller.run(stop), name="canary-controller")
    log.info("canary controller: metrics from %s", settings.prometheus_url)
    return task, checks


async def run_entry_cleanup(
    store: Store, autoregistration: AutoRegistration, grace: float, stop: asyncio.Event
) -> None:
    """Auto-registered WorkloadEntries whose managing replica is gone: this replica's
    heartbeat, and on the leader the sweep (:meth:`AutoRegistration.sweep`)."""
    me = autoregistration.controller
    try_lease = getattr(store, "try_lease", None)
    lease_holder = getattr(store, "lease_holder", None)

    def alive(controller: str) -> bool:
        if lease_holder is None:
            return False  # one replica per store: another name is a run before this one
        return bool(lease_holder(f"replica/{controller}") == controller)

    while not stop.is_set():
        try:
            leader = True
            if try_lease is not None:
                try_lease(f"replica/{me}", me, ENTRY_HEARTBEAT_TTL_S)
                leader = bool(try_lease(ENTRY_CLEANUP_LEASE, me, ENTRY_HEARTBEAT_TTL_S))
            if leader:
                autoregistration.sweep(alive, time.monotonic(), grace)
        except PilotfishError as exc:
            log.warning("WorkloadEntry cleanup: %s", exc)
        except Exception:  # a bug in one pass must not stop the cleanup
            log.exception("WorkloadEntry cleanup pass failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), ENTRY_CLEANUP_TICK_S)
    release = getattr(store, "release_lease", None)
    if release is not None:
        with contextlib.suppress(PilotfishError):
            release(ENTRY_CLEANUP_LEASE, me)
            release(f"replica/{me}", me)


async def follow_ca_directory(identity: ControlPlaneIdentity, stop: asyncio.Event) -> None:
    """With a CA directory shared by replicas: take the root rotation steps another replica
    took, every ``CA_FOLLOW_TICK_S``."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(identity.follow_ca_directory)
        except Exception:  # a bad pass must not stop following
            log.exception("following the CA directory failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CA_FOLLOW_TICK_S)


def start_dashboard(
    settings: ServerSettings, store: Store, mesh: Mesh, token: str, api: web.Application
) -> Dashboard | None:
    """The web dashboard over this control plane, and its routes on the API (where it is, a
    one-time login link for `pilotfish dashboard`)."""
    url = settings.dashboard_url
    if url is None:
        return None
    dashboard = Dashboard(
        store,
        DashboardSettings(
            tokens=frozenset({token}),
            api_url=settings.api_url,
            api_token=token,
            prometheus_url=settings.prometheus_url,
            jaeger_url=f"http://127.0.0.1:{settings.trace_query_port}",
            proxy_status=mesh.proxy_status,
            proxy_config=mesh.proxy_config,
        ),
    )
    add_dashboard_routes(api, dashboard, url)
    return dashboard


async def serve_dashboard(
    settings: ServerSettings, dashboard: Dashboard | None
) -> web.AppRunner | None:
    """Serve the dashboard; one that cannot listen (a port taken) is logged with the reason
    and the control plane runs on without it."""
    if dashboard is None or settings.dashboard_listen is None:
        return None
    host, port = split_address(settings.dashboard_listen, DASHBOARD_PORT)
    runner = web.AppRunner(dashboard.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, shutdown_timeout=2.0).start()
    except OSError as exc:
        log.error("the dashboard did not start on %s: %s", settings.dashboard_listen, exc)
        await runner.cleanup()
        return None
    log.info("dashboard: %s (Prometheus %s)", settings.dashboard_url, settings.prometheus_url)
    return runner


def api_tls_files(
    settings: ServerSettings, identity: ControlPlaneIdentity
) -> tuple[Path, Path, str] | None:
    """The HTTP API's certificate chain and key files (None: plaintext) and the CA file
    clients verify it with ("" for a certificate of the user's own: the system's trust
    store, or the user's CA)."""
    if not settings.api_tls:
        return None
    if settings.api_tls_cert is not None:
        return settings.api_tls_cert, settings.api_tls_key or settings.api_tls_cert, ""
    files = identity.api_tls(settings.api_host, settings.xds_sans)
    return files.cert_file, files.key_file, str(identity.root_cert_path)


def api_tls_context(
    settings: ServerSettings, identity: ControlPlaneIdentity
) -> tuple[ssl.SSLContext | None, str]:
    """The HTTP API's TLS context (None: plaintext) and the CA file clients verify it with
    (see :func:`api_tls_files`)."""
    files = api_tls_files(settings, identity)
    if files is None:
        return None, ""
    cert, key, ca = files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if not ca:
        return context, ""
    # A root rotation re-issues it: the next handshakes present the new one.
    identity.on_api_certificate.append(lambda cert, key: context.load_cert_chain(cert, key))
    return context, ca


def api_worker_config(
    settings: ServerSettings, sock_dir: Path, tls: tuple[Path, Path, str] | None = None
) -> WorkerConfig:
    """What the API worker is started with: the control plane's API on a Unix socket in
    ``sock_dir``, the certificate files of ``tls`` (see :func:`api_tls_files`)."""
    cert, key, _ = tls if tls is not None else ("", "", "")
    return WorkerConfig(
        store_url=settings.store_url,
        data_dir=str(settings.data_dir),
        host=settings.api_host,
        port=settings.api_port,
        upstream=str(sock_dir / "api.sock"),
        log_level=settings.log_level,
        tls_cert=str(cert),
        tls_key=str(key),
    )


async def serve_api(
    settings: ServerSettings,
    identity: ControlPlaneIdentity,
    runner: web.AppRunner,
    worker: ApiWorker | None,
    sock_dir: Path | None,
) -> tuple[ApiWorker | None, str]:
    """Serve the API application of ``runner``: from here on the API port, or (``sock_dir``
    given, see ``ServerSettings.api_worker``) on a Unix socket in that private directory,
    for the API worker process that listens on the API port (``worker``, when it was
    launched already). Returns the worker (None: none) and the CA file clients verify the
    API with."""
    if sock_dir is None:
        api_ssl, api_ca = api_tls_context(settings, identity)
        site = web.TCPSite(
            runner,
            settings.api_host,
            settings.api_port,
            shutdown_timeout=5.0,
            ssl_context=api_ssl,
        )
        await site.start()
        return None, api_ca
    await web.UnixSite(runner, str(sock_dir / "api.sock"), shutdown_timeout=5.0).start()
    files = api_tls_files(settings, identity)
    api_ca = files[2] if files is not None else ""
    if worker is None:
        worker = ApiWorker(api_worker_config(settings, sock_dir, files))
    if api_ca:
        # A root rotation re-issues the certificate (same files): the worker reloads it.
        identity.on_api_certificate.append(lambda cert, key: worker.reload_certificate())
    await worker.start()
    return worker, api_ca


async def serve(settings: ServerSettings, stop: asyncio.Event) -> None:
    """Run until ``stop`` is set."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = open_store(settings.store_url)
    api_worker: ApiWorker | None = None
    sock_dir: Path | None = None
    try:
        ensure_builtin_namespaces(store)
        token = load_or_create_admin_token(settings.data_dir)
        if settings.uses_api_worker:
            # A short path (Unix socket paths are limited to ~100 bytes), only this user's.
            sock_dir = Path(tempfile.mkdtemp(prefix=SOCKET_DIR_PREFIX))
            if not settings.api_tls:
                # Launched now, it imports while the rest starts; TLS needs the CA first.
                api_worker = ApiWorker(api_worker_config(settings, sock_dir))
                await api_worker.launch()
        identity = ControlPlaneIdentity.open(
            IdentitySettings(
                data_dir=settings.data_dir,
                ca_dir=settings.ca_dir,
                xds_tls=settings.xds_tls,
                xds_host=settings.xds_host,
                xds_sans=settings.xds_sans,
            )
        )
        roots = identity.root_cert_path
        mesh = Mesh(store, settings, identity)
        identity.connected_nodes = lambda: {s.node_id for s in mesh.xds.status()}
        await mesh.start()
        collector = await start_trace_collector(settings, store)
        canaries = start_canary_controller(settings, store, mesh.vips, stop)
        cleanup = asyncio.create_task(
            run_entry_cleanup(
                store, mesh.autoregistration, settings.workload_entry_cleanup_grace, stop
            ),
            name="workloadentry-cleanup",
        )
        ca_follower = (
            asyncio.create_task(follow_ca_directory(identity, stop), name="ca-directory")
            if settings.ca_dir is not None
            else None
        )
        # What a storm or a push to every proxy freed goes back to the system afterwards.
        trimmer = asyncio.create_task(trim_heap(stop), name="heap-trim")
        api = ApiServer(
            store,
            ApiSettings(
                tokens=frozenset({token}),
                proxy_status=mesh.proxy_status,
                proxy_config=mesh.proxy_config,
                config_preview=mesh.config_preview,
                explain=mesh.explain,
                vips=mesh.vips,
                metrics=mesh.metrics.exposition,
                on_validated=mesh.metrics.validated,
                ready=lambda: mesh.xds.port != 0,
                workload_tokens=identity.verify_workload_token,
                control_plane=lambda: {
                    "xdsAddress": f"{settings.xds_host}:{mesh.xds.port}",
                    "xdsTls": settings.xds_tls,
                    "rootCert": identity.ca.trust_bundle(),
                    "trustDomain": identity.ca.trust_domain,
                },
                forwarded=settings.uses_api_worker,
            ),
        )
        app = api.app()
        add_token_routes(app, identity.issue_token)
        add_ca_routes(app, identity.ca_status, identity.rotate_root, api.record_change)
        dashboard = start_dashboard(settings, store, mesh, token, app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        api_worker, api_ca = await serve_api(settings, identity, runner, api_worker, sock_dir)
        dashboard_runner = await serve_dashboard(settings, dashboard)
        if settings.write_context:
            path = save_context(
                Context(settings.context_name, settings.api_url, token, ca_file=api_ca)
            )
            log.info("wrote context %r to %s", settings.context_name, path)
        log.info(
            "control plane ready: API %s, xDS %s:%d (%s), store %s, revision %d, mesh roots %s",
            settings.api_url,
            settings.xds_host,
            mesh.xds.port,
            "TLS" if settings.xds_tls else "plaintext",
            describe_store(settings.store_url),
            store.revision(),
            roots,
        )
        mode = f"TLS, agents verify with --ca-file {roots}" if settings.xds_tls else "plaintext"
        print(
            f"pilotfish control plane: API {settings.api_url}, "
            f"xDS {settings.xds_host}:{mesh.xds.port} ({mode})",
            flush=True,
        )
        await stop.wait()
        if dashboard_runner is not None:
            await dashboard_runner.cleanup()
        if canaries is not None:
            await canaries[0]
            await canaries[1].close()
        await cleanup
        await trimmer
        if ca_follower is not None:
            await ca_follower
        if api_worker is not None:
            await api_worker.stop()
        await runner.cleanup()
        if collector is not None:
            await collector.stop()
        await mesh.stop()
    finally:
        if api_worker is not None:
            await api_worker.stop()
        store.close()
        if sock_dir is not None:
            shutil.rmtree(sock_dir, ignore_errors=True)


#: How long a thread runs before another one waiting for the interpreter gets it (seconds;
#: Python's default is 5 ms). The event loop (xDS streams, ACKs, the HTTP API) shares the
#: interpreter with the threads that generate configurations: each time it waits on the
#: network it must win the interpreter back from them, so during a connection storm the
#: API's latency is a multiple of this.
SWITCH_INTERVAL_S = 0.001


def run_server(settings: ServerSettings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reports = memreport.directory_from_env()
        if reports is not None:  # off by default: see pilotfish.memreport
            loop.add_signal_handler(signal.SIGUSR2, memreport.write_report, reports)
        await serve(settings, stop)

    try:
        asyncio.run(main())
    except ApiWorkerError as exc:
        log.error("the control plane did not start: %s", exc)
        sys.exit(1)
