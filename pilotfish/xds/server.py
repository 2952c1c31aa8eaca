"""The ADS gRPC server: streams from Envoys in, generated snapshots out (SotW and Delta).

Contract with the rest of the control plane::

    server = DiscoveryServer(settings, generator, on_connect=..., on_disconnect=...)
    await server.start()             # binds settings.address (TLS if settings.tls)
    server.push(PushRequest.of("config"))   # after any change; debounced and merged
    server.status()                  # list[ProxyStatus] for the API and proxy-status
    await server.stop()

``extra_services`` register other gRPC services on the same server and port before it starts
(the control plane's CA: ``ControlPlaneIdentity.add_to_server``).

``prepare()``, when given, runs (in a worker thread) before a debounced push lists the
connections it plans for; ``planner(request, nodes)`` then says what each one gets.

``generator(node) -> Resources`` is called for a proxy when it connects and on every push that
concerns it (in a worker thread unless ``settings.generate_in_thread`` is off). What it returns
is diffed against what that proxy has, and only the difference is sent, in make-before-break
order (see ``ordering.py``). ``on_connect(node)`` runs when the first stream of a node id
opens, ``on_disconnect(node)`` when its last one closes (plain or async callables): for a
proxy that reconnects declaring the listeners it runs, as soon as it declares them (it already
serves; it may still wait in the connection throttle), for a new one once its first
configuration is generated (it listens only once it applied it).

A stream whose node cannot be parsed is closed with INVALID_ARGUMENT. Errors inside the server
are logged and never reach Envoy as gRPC status text: a failed generation keeps the stream and
the config the proxy has; a failure at connect closes the stream with a generic UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import json_format

from pilotfish import memreport
from pilotfish.api.node import NodeInfo
from pilotfish.xds.connection import DeltaResponse, ProxyConnection, Request, Response
from pilotfish.xds.metrics import NO_METRICS, XdsMetrics, metric_type
from pilotfish.xds.protocol import Have, resumes_listeners
from pilotfish.xds.push import Debouncer, PushRequest, Scope, merge
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    Entry,
    EntryMap,
    Generator,
    ResourceCache,
    Resources,
    Snapshot,
    build_snapshot,
    update_snapshot,
    with_types_of,
)
from pilotfish.xds.settings import TlsSettings, XdsSettings
from pilotfish.xds.status import GenerationError, ProxyStatus

log = logging.getLogger("pilotfish.xds")

NodeHook = Callable[[NodeInfo], Awaitable[None] | None]
#: ``(node, request metadata) -> None``: may this node open a stream? Raises StreamRefused.
Admission = Callable[[NodeInfo, Mapping[str, Any]], None]


#: Istio's health type: an agent reports its workload's probe result on an xDS stream with a
#: request of this type (``error_detail`` set while unhealthy); no response is sent.
HEALTH_TYPE = "istio.io/health"
#: ``(node, healthy, message) -> None``: a workload's probe result changed.
HealthHook = Callable[[NodeInfo, bool, str], Awaitable[None] | None]


class StreamRefused(Exception):
    """A new xDS stream is refused (PERMISSION_DENIED with this message)."""


#: ``(request, connected nodes) -> {node id: scope}``: which proxies a push concerns and what
#: of each to regenerate (a scope of ``None``: everything); a node left out is not pushed to.
#: Runs in a worker thread.
Planner = Callable[[PushRequest, Sequence[NodeInfo]], Mapping[str, Scope | None]]
#: ``(node, scope) -> Resources`` of the types in the scope only, and EDS with CDS (a faster
#: path for scoped pushes); of a type the scope names, at least those names (and the load
#: assignments of the clusters it names).
ScopedGenerator = Callable[[NodeInfo, Scope], Resources]
#: ``(node, scope) -> (key, generate)`` or None: for a scope whose generation is the same for
#: every proxy with the same ``key`` (a view's outbound clusters and load assignments at one
#: context: a push of endpoint changes), the key and that generation. Proxies with the same
#: key and the same maps before get the same maps after: updated once, not once per proxy.
SharedGeneration = tuple[Hashable, Callable[[], Resources]]
ScopedView = Callable[[NodeInfo, Scope], SharedGeneration | None]
#: Registers another service on the xDS gRPC server (called before it starts).
ServiceHook = Callable[[grpc.aio.Server], None]


#: Types whose every resource a light generation may regenerate: one route configuration per
#: port, shared by a view; the few secrets a proxy names.
_LIGHT_WHOLE_TYPES = frozenset({ROUTE_TYPE, SECRET_TYPE})


def _light(scope: Scope) -> bool:
    """Cheap to generate: clusters, endpoints and listeners only by name (all of them is
    thousands of resources per proxy at a thousand services)."""
    return all(names is not None or t in _LIGHT_WHOLE_TYPES for t, names in scope.items())


#: Most scoped updates kept for sharing at once (each holds the maps before and after).
_SHARED_MAX = 256


def _describe(ref: weakref.ref[DiscoveryServer]) -> Callable[[], list[str]]:
    """The memory report's section on a server's caches (weakly: it does not keep it)."""

    def describe() -> list[str]:
        server = ref()
        if server is None:
            return ["stopped"]
        with server._shared_lock:
            shared = len(server._shared)
        streams = list(server._streams.values())
        # What the proxies are recorded holding is a view over the map of their first
        # configuration: the entries those maps keep that no proxy's current one has.
        bases: dict[int, Mapping[str, Any]] = {}
        targets: dict[int, Mapping[str, Any]] = {}
        for stream in streams:
            for state in stream.conn.types.values():
                if isinstance(state.have, Have):
                    bases.setdefault(id(state.have.base), state.have.base)
            for entries in stream.conn.target.entries.values():
                targets.setdefault(id(entries), entries)
        current = {id(e) for m in targets.values() for e in m.values()}
        pinned = {id(e): e for m in bases.values() for e in m.values() if id(e) not in current}
        size = sum(len(e.any.value) for e in pinned.values()) / 2**20
        return [
            f"streams {len(streams)}, shared updates {shared}",
            f"first-configuration maps recorded as held: {len(bases)}, keeping {len(pinned)} "
            f"entries no current map has ({size:.1f} MB packed)",
            *server.cache.describe(),
        ]

    return describe


class _Wake:
    """Inbox marker: a push is pending for this connection."""


class _StreamClosed(Exception):
    """Writing to the proxy failed: it went away."""


async def _write(
    context: grpc.aio.ServicerContext[Any, Any],
    responses: list[Response],
    metrics: XdsMetrics = NO_METRICS,
) -> None:
    for response in responses:
        try:
            await context.write(response)
        except Exception as e:
            metrics.send_error(metric_type(response.type_url))
            raise _StreamClosed(repr(e)) from e
        type_ = metric_type(response.type_url)
        metrics.pushed(type_)
        if isinstance(response, DeltaResponse):  # its ``resources`` would copy each one
            metrics.sent_resources(type_, len(response.entries))
        else:
            metrics.sent_resources(type_, len(response.resources))


_WAKE = _Wake()


def parse_node(node: Any) -> NodeInfo:
    """NodeInfo from an Envoy ``config.core.v3.Node``. Raises ValueError if it is unusable."""
    if not node.id:
        raise ValueError("the first request carries no node id")
    metadata = json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {}
    try:
        return NodeInfo.from_node(node.id, metadata)
    except (TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"node {node.id!r}: {e}") from e


class _Stream:
    def __init__(self, conn: ProxyConnection, inbox: asyncio.Queue[Request | _Wake | None]) -> None:
        self.conn = conn
        self.inbox = inbox
        #: Monotonic time until which this stream holds a connection-throttle slot (None:
        #: it holds none).
        self.throttled_until: float | None = None
        #: The proxy counts as connected (``on_connect`` ran for its node, or for another
        #: stream of it).
        self.registered = False
        #: The stream's first request, until it is handled.
        self.first: Request | None = None


class DiscoveryServer:
    """Aggregated Discovery Service over gRPC for every connected proxy."""

    def __init__(
        self,
        settings: XdsSettings,
        generator: Generator,
        *,
        on_connect: NodeHook | None = None,
        on_disconnect: NodeHook | None = None,
        extra_services: Sequence[ServiceHook] = (),
        metrics: XdsMetrics | None = None,
        planner: Planner | None = None,
        prepare: Callable[[], None] | None = None,
        scoped_generator: ScopedGenerator | None = None,
        admit: Admission | None = None,
        on_health: HealthHook | None = None,
        scoped_view: ScopedView | None = None,
    ) -> None:
        self.settings = settings
        #: Called with a workload's probe result reported on an ``istio.io/health`` stream.
        self.on_health = on_health
        #: Decides whether a new stream's node may connect, from its node and the stream's
        #: request metadata (e.g. ``authorization``); raises :class:`StreamRefused` if not.
        self.admit = admit
        self.planner = planner
        self.prepare = prepare
        self.scoped_generator = scoped_generator
        self.scoped_view = scoped_view
        #: Scoped updates shared by proxies of one view (see ``ScopedView``): (view, scope,
        #: the maps before) -> (those maps, weakly; the first proxy's snapshot after).
        #: Emptied at each push.
        self._shared: dict[Hashable, tuple[tuple[weakref.ref[EntryMap], ...], Snapshot]] = {}
        self._shared_lock = threading.Lock()
        self.metrics = metrics or NO_METRICS
        self.extra_services = tuple(extra_services)
        self.generator = generator
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.cache = ResourceCache()
        if memreport.directory_from_env() is not None:  # off by default
            memreport.register("xDS server", _describe(weakref.ref(self)))
        self._streams: dict[str, _Stream] = {}
        self._per_node: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._server: grpc.aio.Server | None = None
        self._port = 0
        self._debouncer: Debouncer | None = None
        self._firing = 0
        self._generations: asyncio.Semaphore | None = None
        self._connects: asyncio.Semaphore | None = None
        #: Streams waiting for a connection-throttle slot (a storm is on while some wait).
        self._queued_connects = 0
        self._event_loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port bound by :meth:`start`."""
        return self._port

    async def start(self) -> None:
        self._event_loop = asyncio.get_running_loop()
        self._generations = asyncio.Semaphore(self.settings.max_concurrent_generations)
        self._connects = asyncio.Semaphore(self.settings.max_concurrent_connects)
        self._debouncer = Debouncer(self.settings.debounce, self._fire, storm=self.in_storm)
        self._debouncer.start()
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.settings.max_receive_message_bytes),
                ("grpc.max_send_message_length", -1),
                # Envoy pings its ADS connection (every 30 s with Pilotfish's bootstrap). gRPC's
                # default policy allows one ping per 5 minutes and closes the connection after
                # a few "too many pings": the proxy would reconnect every few minutes and, while
                # it does, drop out of the registry. Accept pings down to 5 s apart.
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_ping_strikes", 0),
                *self.settings.grpc_options(),
            ]
        )
        _add_ads(_Servicer(self), server)
        for register in self.extra_services:
            register(server)
        tls = self.settings.tls
        if tls is None:
            port = server.add_insecure_port(self.settings.address)
        else:
            port = server.add_secure_port(self.settings.address, reloading_credentials(tls))
        if port == 0:
            raise OSError(f"xDS server could not bind {self.settings.address}")
        self._port = port
        await server.start()
        self._server = server
        log.info("xDS server listening on %s (port %d)", self.settings.address, port)

    async def stop(self, grace: float = 1.0) -> None:
        if self._debouncer is not None:
            await self._debouncer.stop()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    # -- API for the control plane -------------------------------------------------------------

    def push(self, request: PushRequest) -> None:
        """Ask for a push; debounced and merged. Call from the server's event loop."""
        if self._debouncer is None:
            raise RuntimeError("DiscoveryServer.push() before start()")
        for reason, _count in request.reasons:
            self.metrics.triggered(reason)
        self._debouncer.add(request)

    def push_threadsafe(self, request: PushRequest) -> None:
        """:meth:`push` from another thread (e.g. a store watcher running in a thread)."""
        if self._event_loop is None:
            raise RuntimeError("DiscoveryServer.push_threadsafe() before start()")
        self._event_loop.call_soon_threadsafe(self.push, request)

    def push_now(self, request: PushRequest) -> None:
        """Queue a push to the concerned connections at once, without debounce."""
        for stream in self._streams.values():
            if request.concerns(stream.conn.node_id):
                stream.conn.pending_push = merge(stream.conn.pending_push, request)
                stream.inbox.put_nowait(_WAKE)

    def status(self) -> list[ProxyStatus]:
        return [s.conn.status() for s in self._streams.values()]

    def in_storm(self) -> bool:
        """A connection storm is on: more proxies are connecting than the connection throttle
        lets through at once, so some wait for their first configuration."""
        return self._queued_connects > 0

    def connections(self) -> int:
        """How many ADS streams are open."""
        return len(self._streams)

    def connected_nodes(self) -> list[NodeInfo]:
        return [s.conn.node for s in self._streams.values()]

    def held(self, node_id: str, type_url: str) -> dict[str, Entry] | None:
        """The resources of ``type_url`` the proxy ``node_id`` was sent and holds, as far as
        its stream knows (their newest entries); None when it is not connected or has not
        asked for the type. For readers comparing with what the proxy runs (on-demand names
        are held only once asked for)."""
        for stream in self._streams.values():
            conn = stream.conn
            if conn.node_id != node_id:
                continue
            state = conn.types.get(type_url)
            if state is None or not state.requested:
                return None
            available = conn.target.get(type_url)
            return {n: e for n in list(state.have) if (e := available.get(n)) is not None}
        return None

    def synced(self) -> bool:
        """No push waits or is being delivered, and every response sent was answered."""
        if self._firing or (self._debouncer is not None and self._debouncer.pending):
            return False
        return all(s.synced for s in self.status())

    async def wait_synced(self, timeout: float = 30.0, poll: float = 0.01) -> bool:
        """Wait until :meth:`synced`; False if ``timeout`` passes first."""
        end = time.monotonic() + timeout
        while not self.synced():
            if time.monotonic() > end:
                return False
            await asyncio.sleep(poll)
        return True

    # -- internals -----------------------------------------------------------------------------

    async def _fire(self, request: PushRequest) -> None:
        # What the generations of the push before this one did not use is let go.
        self.cache.next_push()
        if self.planner is None or request.scope is not None:
            log.debug("%s to %d connections", request.describe(), len(self._streams))
            self.push_now(request)
            return
        self._firing += 1
        try:
            if self.prepare is not None:
                # Before the listing: a stream that opens after it is generated from what
                # ``prepare`` saw or newer, one listed gets the push (see ``Mesh.prepare``).
                try:
                    await asyncio.to_thread(self.prepare)
                except Exception:
                    self.metrics.internal_error()
                    log.exception("preparing %s failed", request.describe())
            with self._shared_lock:
                self._shared.clear()
            streams = list(self._streams.values())
            nodes = [s.conn.node for s in streams]
            try:
                plans = await asyncio.to_thread(self._plan, request, nodes)
            except Exception:
                self.metrics.internal_error()
                log.exception("planning %s failed; pushing everything", request.describe())
                self.push_now(request)
                return
            pushed = 0
            for stream in streams:
                node_id = stream.conn.node_id
                if node_id not in plans or not request.concerns(node_id):
                    continue
                pushed += 1
                scoped = request.scoped(plans[node_id])
                stream.conn.pending_push = merge(stream.conn.pending_push, scoped)
                stream.inbox.put_nowait(_WAKE)
            log.debug("%s to %d of %d connections", request.describe(), pushed, len(streams))
        finally:
            self._firing -= 1

    def _plan(self, request: PushRequest, nodes: Sequence[NodeInfo]) -> Mapping[str, Scope | None]:
        """The planner's answer (in a worker thread), after warming what the proxies' light
        generations share: for one proxy of each namespace and proxy type, the scoped
        generator runs here, so the parts built once per view (route configurations, the
        clusters of a namespace) are not built on the event loop by the first of them."""
        assert self.planner is not None
        plans = self.planner(request, nodes)
        if self.scoped_generator is None:
            return plans
        warmed: set[tuple[str, str]] = set()
        for node in nodes:
            scope = plans.get(node.node_id)
            group = (node.proxy_type, node.namespace)
            if scope is None or not _light(scope) or group in warmed:
                continue
            warmed.add(group)
            try:
                self.scoped_generator(node, scope)
            except Exception:  # the push to that proxy reports it
                log.debug("warming the generation for %s failed", node.node_id, exc_info=True)
        return plans

    async def _generate(
        self, node: NodeInfo, previous: Snapshot | None = None, scope: Scope | None = None
    ) -> Snapshot:
        assert self._generations is not None
        light = previous is not None and scope is not None and _light(scope)
        async with self._generations:
            if self.settings.generate_in_thread and not light:
                return await asyncio.to_thread(self._build, node, previous, scope)
            # A light scoped generation (a fraction of a millisecond once the shared parts
            # are built) runs on the loop: handing it to a thread costs more than the work
            # (a thread hop, then waiting for the GIL behind the loop).
            return self._build(node, previous, scope)

    def _build(
        self, node: NodeInfo, previous: Snapshot | None = None, scope: Scope | None = None
    ) -> Snapshot:
        if previous is None or scope is None:
            return build_snapshot(self.generator(node), self.cache)
        shared = self.scoped_view(node, scope) if self.scoped_view is not None else None
        if shared is not None:
            return self._shared_update(previous, scope, *shared)
        if self.scoped_generator is not None:
            resources = self.scoped_generator(node, scope)
        else:
            resources = self.generator(node)
        return update_snapshot(previous, resources, scope, self.cache)

    def _shared_update(
        self,
        previous: Snapshot,
        scope: Scope,
        view: Hashable,
        generate: Callable[[], Resources],
    ) -> Snapshot:
        """``update_snapshot`` once for the proxies of one view that had the same maps and get
        the same change: the others take its maps (a storm's endpoint pushes reach every
        connected proxy with the same few hundred clusters and load assignments)."""
        types = frozenset(scope) | ({ENDPOINT_TYPE} if CLUSTER_TYPE in scope else frozenset())
        order = sorted(types)
        maps = [previous.entries.get(t) for t in order]
        if not all(isinstance(m, EntryMap) for m in maps):
            return update_snapshot(previous, generate(), scope, self.cache)
        on_demand = tuple(previous.on_demand.get(t) for t in order)
        key = (view, tuple(sorted(scope.items())), tuple(id(m) for m in maps), on_demand)
        with self._shared_lock:
            found = self._shared.get(key)
        if found is not None and all(r() is m for r, m in zip(found[0], maps, strict=True)):
            return with_types_of(previous, found[1], types)
        snapshot = update_snapshot(previous, generate(), scope, self.cache)
        # Proxies whose maps come out the same share them (one map each, however they got
        # there): the next push updates them once too.
        shared = {
            t: self.cache.share(t, m) for t in types if (m := snapshot.entries.get(t)) is not None
        }
        snapshot = with_types_of(
            snapshot,
            Snapshot(entries=shared, on_demand=snapshot.on_demand, directory=snapshot.directory),
            types,
        )
        # Weak references: the maps a push replaces are not kept alive by this memo.
        refs = tuple(weakref.ref(m) for m in maps if isinstance(m, EntryMap))
        with self._shared_lock:
            if len(self._shared) >= _SHARED_MAX:
                self._shared.clear()
            self._shared[key] = (refs, snapshot)
        return snapshot

    async def _hook(self, hook: NodeHook | None, node: NodeInfo, what: str) -> None:
        if hook is None:
            return
        try:
            result = hook(node)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s hook failed for %s", what, node.node_id)

    async def serve_stream(
        self,
        requests: AsyncIterator[Request],
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        delta: bool,
    ) -> None:
        """Serve one ADS stream until the proxy goes away."""
        inbox: asyncio.Queue[Request | _Wake | None] = asyncio.Queue()
        #: Set once the proxy declares listeners it already runs (it reconnects).
        resumed = asyncio.Event()

        async def read() -> None:
            try:
                async for request in requests:
                    if not resumed.is_set() and resumes_listeners(request):
                        resumed.set()
                    inbox.put_nowait(request)
            except Exception as e:  # stream reset by the peer, cancelled, ...
                log.debug("xDS stream read ended: %r", e)
            finally:
                inbox.put_nowait(None)

        reader = asyncio.get_running_loop().create_task(read())
        try:
            await self._serve(inbox, context, delta, resumed)
        except grpc.aio.AbortError:
            raise
        except _StreamClosed as e:
            log.debug("xDS stream from %s closed while writing: %s", context.peer(), e)
        except Exception:
            # Logged here, never sent to the proxy as status text (it would resend everything).
            self.metrics.internal_error()
            log.exception("xDS stream from %s failed", context.peer())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _serve(
        self,
        inbox: asyncio.Queue[Request | _Wake | None],
        context: grpc.aio.ServicerContext[Any, Any],
        delta: bool,
        resumed: asyncio.Event,
    ) -> None:
        first = await inbox.get()
        if first is None or isinstance(first, _Wake):
            return
        try:
            node = parse_node(first.node)
        except ValueError as e:
            log.warning("xDS stream from %s refused: %s", context.peer(), e)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid node: {e}")
            return
        if self.admit is not None:
            metadata = {str(k).lower(): v for k, v in (context.invocation_metadata() or ())}
            try:
                self.admit(node, metadata)
            except StreamRefused as e:
                log.warning("xDS stream of %s from %s refused: %s", node.node_id, context.peer(), e)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(e))
                return
        if first.type_url == HEALTH_TYPE:
            await self._serve_health(node, first, inbox)
            return
        if delta:
            node = dataclasses.replace(node, delta_xds=True)
        conn = ProxyConnection(
            f"{next(self._ids)}",
            node,
            delta=delta,
            peer=context.peer(),
            ack_timeout=self.settings.ack_timeout,
            control_plane_id=self.settings.control_plane_id,
            metrics=self.metrics,
        )
        # Registered before the first generation, so a push fired meanwhile is not missed.
        stream = _Stream(conn, inbox)
        self._streams[conn.connection_id] = stream
        assert self._connects is not None
        try:
            # The connection throttle: a slot until the proxy has its first configuration.
            # A proxy that reconnects with listeners joins the registry meanwhile.
            self._queued_connects += 1
            try:
                await self._throttle(stream, resumed)
            finally:
                self._queued_connects -= 1
            stream.throttled_until = time.monotonic() + self.settings.ack_timeout
            conn.generating = True
            try:
                conn.set_target(await self._generate(node))
            except Exception:
                self.metrics.internal_error()
                log.exception("generating configuration for %s failed", node.node_id)
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    "the control plane could not generate configuration",
                )
                return
            finally:
                conn.generating = False
            # Handed over, not kept: a resumed proxy's first request declares thousands of
            # resources, and this frame lives as long as the stream.
            stream.first, first = first, None
            await self._run_connected(stream, context)
        finally:
            self._release_throttle(stream)
            del self._streams[conn.connection_id]
            await self._unregister(stream)

    async def _throttle(self, stream: _Stream, resumed: asyncio.Event) -> None:
        """Wait for a connection-throttle slot. A proxy that declares the listeners it runs
        (it reconnects: ``resumes_listeners``) is registered as soon as it does, before its
        first configuration: it already serves, and every proxy's first configuration can
        then carry its endpoint instead of a push to each one after it (a control-plane
        restart reconnects every proxy at once). A proxy connecting for the first time is
        registered only once its first configuration is generated."""
        assert self._connects is not None
        acquire = asyncio.ensure_future(self._connects.acquire())
        try:
            if not resumed.is_set():
                resume = asyncio.ensure_future(resumed.wait())
                try:
                    await asyncio.wait({acquire, resume}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    resume.cancel()
            if resumed.is_set():
                await self._register(stream, resumed=True)
            await acquire
        except BaseException:
            if acquire.done() and not acquire.cancelled() and acquire.exception() is None:
                self._connects.release()
            acquire.cancel()
            raise
        if resumed.is_set():  # declared while the slot was being taken
            await self._register(stream, resumed=True)

    async def _register(self, stream: _Stream, *, resumed: bool = False) -> None:
        """The proxy joins: ``on_connect`` when the first stream of its node id does."""
        if stream.registered:
            return
        stream.registered = True
        conn = stream.conn
        self._per_node[conn.node_id] = self._per_node.get(conn.node_id, 0) + 1
        log.info(
            "%s connected (%s, %s%s)",
            conn.node_id,
            conn.status().protocol,
            conn.peer,
            ", resuming its listeners" if resumed else "",
        )
        if self._per_node[conn.node_id] == 1:
            await self._hook(self.on_connect, conn.node, "on_connect")

    async def _unregister(self, stream: _Stream) -> None:
        if not stream.registered:
            return
        stream.registered = False
        conn = stream.conn
        self._per_node[conn.node_id] -= 1
        log.info("%s disconnected", conn.node_id)
        if self._per_node[conn.node_id] == 0:
            del self._per_node[conn.node_id]
            await self._hook(self.on_disconnect, conn.node, "on_disconnect")

    async def _serve_health(
        self,
        node: NodeInfo,
        first: Request,
        inbox: asyncio.Queue[Request | _Wake | None],
    ) -> None:
        """A stream that only reports health (an agent's, beside its Envoy's stream): each
        request is the workload's probe result; nothing is generated or sent back, and the
        stream does not count as the proxy's connection."""
        item: Request | _Wake | None = first
        while item is not None:
            if not isinstance(item, _Wake) and item.type_url == HEALTH_TYPE:
                healthy = not item.HasField("error_detail")
                message = item.error_detail.message if not healthy else ""
                log.info(
                    "%s reports its workload %s%s",
                    node.node_id,
                    "healthy" if healthy else "unhealthy",
                    f": {message}" if message else "",
                )
                await self._health(node, healthy, message)
            item = await inbox.get()

    async def _health(self, node: NodeInfo, healthy: bool, message: str) -> None:
        if self.on_health is None:
            return
        try:
            result = self.on_health(node, healthy, message)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.metrics.internal_error()
            log.exception("on_health for %s failed", node.node_id)

    def _release_throttle(self, stream: _Stream) -> None:
        if stream.throttled_until is not None:
            stream.throttled_until = None
            assert self._connects is not None
            self._connects.release()

    async def _run_connected(
        self, stream: _Stream, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        await self._register(stream)
        await self._loop(stream, context)

    async def _loop(
        self,
        stream: _Stream,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        conn = stream.conn
        item: Request | _Wake | None = stream.first
        stream.first = None
        while True:
            if item is None:
                return
            responses: list[Response] = []
            try:
                if isinstance(item, _Wake):
                    responses = conn.check_timeout()
                else:
                    responses = conn.handle_request(item)
            except Exception:
                self.metrics.internal_error()
                log.exception("%s: handling an xDS request failed", conn.node_id)
            await _write(context, responses, self.metrics)
            if stream.throttled_until is not None and (
                conn.initially_synced or time.monotonic() >= stream.throttled_until
            ):
                self._release_throttle(stream)
            if not conn.busy and conn.pending_push is not None:
                await self._start_push(conn, context)
            deadline = conn.deadline
            if stream.throttled_until is not None:
                deadline = min(deadline or stream.throttled_until, stream.throttled_until)
            if deadline is None:
                item = await stream.inbox.get()
                continue
            try:
                item = await asyncio.wait_for(
                    stream.inbox.get(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                item = _WAKE

    async def _start_push(
        self, conn: ProxyConnection, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        request, conn.pending_push = conn.pending_push, None
        assert request is not None
        conn.generating = True
        try:
            snapshot = await self._generate(conn.node, conn.generated, request.scope)
        except Exception as e:
            self.metrics.internal_error()
            log.exception("%s: generating configuration failed; keeping what it has", conn.node_id)
            conn.generation_error = GenerationError(f"{type(e).__name__}: {e}", time.time())
            return
        finally:
            conn.generating = False
        conn.generation_error = None
        try:
            responses = conn.begin_push(snapshot, request)
        except Exception:
            self.metrics.internal_error()
            log.exception("%s: planning the push failed", conn.node_id)
            return
        await _write(context, responses, self.metrics)


def _serialize(response: Response) -> bytes:
    """gRPC's response serializer: a SotW message, or a Delta response whose resources are
    already encoded (``DeltaResponse``), serialized by itself."""
    return response.SerializeToString()


_ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


def _add_ads(servicer: _Servicer, server: grpc.aio.Server) -> None:
    """Register ADS as the generated ``add_AggregatedDiscoveryServiceServicer_to_server``
    does, with :func:`_serialize` for responses."""
    handlers = {
        "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=_serialize,
        ),
        "DeltaAggregatedResources": grpc.stream_stream_rpc_method_handler(
            servicer.DeltaAggregatedResources,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=_serialize,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_ADS_SERVICE, handlers),))
    server.add_registered_method_handlers(_ADS_SERVICE, handlers)


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: DiscoveryServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        await self._server.serve_stream(request_iterator, context, delta=False)

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> None:
        await self._server.serve_stream(request_iterator, context, delta=True)


def reloading_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    """TLS credentials that follow ``tls``'s files: a certificate replaced on disk (the
    control plane's, re-issued by a root rotation) serves the next handshakes."""

    def read() -> tuple[tuple[float, ...], grpc.ServerCertificateConfiguration]:
        files = [tls.key_file, tls.cert_file, *([tls.ca_file] if tls.ca_file else [])]
        stamp = tuple(f.stat().st_mtime for f in files)
        key, cert = tls.key_file.read_bytes(), tls.cert_file.read_bytes()
        public = serialization.load_pem_private_key(key, password=None).public_key()
        if x509.load_pem_x509_certificate(cert).public_key() != public:
            raise ValueError("the key does not match the certificate (being replaced?)")
        config = grpc.ssl_server_certificate_configuration(
            [(key, cert)],
            root_certificates=tls.ca_file.read_bytes() if tls.ca_file else None,
        )
        return stamp, config

    current = [read()]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            files = [tls.key_file, tls.cert_file, *([tls.ca_file] if tls.ca_file else [])]
            if tuple(f.stat().st_mtime for f in files) == current[0][0]:
                return None
            current[0] = read()
        except (OSError, ValueError) as exc:
            log.warning("xDS TLS files not reloaded (%s); serving the previous certificate", exc)
            return None
        log.info("xDS serves a new certificate from %s", tls.cert_file)
        return current[0][1]

    return grpc.dynamic_ssl_server_credentials(
        current[0][1], fetch, require_client_authentication=tls.require_client_cert
    )
