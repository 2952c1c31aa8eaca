"""A small ADS client that subscribes the way Envoy does, for benchmarks and tests.

It asks for clusters, then the endpoints the EDS clusters name, then listeners, then the route
configurations their HTTP connection managers name (and, as Envoy, every virtual host over VHDS
when a route configuration has ``vhds``), and ACKs every response (optionally holding
the CDS ACK until the endpoints of new clusters arrived, as Envoy does). It records when each
version arrived, so a benchmark can run hundreds of simulated proxies against one server.
``reject`` turns it into a proxy that NACKs what a test wants rejected. SotW or Delta.

With ``reconnect``, a stream that ends (the control plane restarted) is opened again after a
jittered exponential backoff (0.5 s base, 30 s at most), as Envoy does, and resumes the way
Envoy 1.40 does over Delta (checked against a real Envoy): at once, one request per type it
had asked for (clusters, endpoints, listeners, routes), each with the names it subscribes to
and ``initial_resource_versions`` of every resource it holds. Responses then only bring what
changed; :attr:`AdsClient.streams` counts the streams opened.

    client = AdsClient("127.0.0.1:15012", node, delta=True)
    await client.start()
    await client.wait_for(lambda c: "outbound|80||a" in c.clusters)
    await client.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, json_format, struct_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from pilotfish.api.node import NodeInfo
from pilotfish.api.typeurls import type_url
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
)

log = logging.getLogger("pilotfish.testing.ads_client")

MESSAGE_TYPES: Mapping[str, type[Message]] = {
    CLUSTER_TYPE: cluster_pb2.Cluster,
    ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment,
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_TYPE: route_pb2.RouteConfiguration,
    SECRET_TYPE: secret_pb2.Secret,
    VIRTUAL_HOST_TYPE: route_components_pb2.VirtualHost,
    EXTENSION_CONFIG_TYPE: extension_pb2.TypedExtensionConfig,
}
_HCM_TYPE = type_url(hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name)

#: (type URL, {name: message}) -> error message to NACK with, or None to accept.
RejectFn = Callable[[str, Mapping[str, Message]], str | None]


@dataclass(frozen=True)
class Received:
    """One response as the client saw it."""

    type_url: str
    version: str
    nonce: str
    at: float  # time.monotonic()
    names: tuple[str, ...]
    removed: tuple[str, ...] = ()
    nacked: bool = False


@dataclass
class _TypeState:
    names: set[str] = field(default_factory=set)
    requested: bool = False
    nonce: str = ""
    version: str = ""


def unpack(type_url: str, packed: any_pb2.Any) -> Message:
    cls = MESSAGE_TYPES.get(type_url)
    if cls is None:
        return packed
    message = cls()
    packed.Unpack(message)
    return message


def resource_name(message: Message) -> str:
    """The xDS name of a resource (``cluster_name`` for a ClusterLoadAssignment)."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(getattr(message, "name", ""))


def eds_name(name: str, cluster: Message) -> str | None:
    """The ClusterLoadAssignment an EDS cluster asks for (None: not an EDS cluster)."""
    assert isinstance(cluster, cluster_pb2.Cluster)
    if cluster.HasField("type") and cluster.type == cluster_pb2.Cluster.EDS:
        return str(cluster.eds_cluster_config.service_name or name)
    return None


#: Resources unpacked once for all the clients of a process that share it, by (type URL,
#: name, version): the message and, for a cluster, the load assignment it asks for.
Shared = dict[tuple[str, str, str], tuple[Message, str | None]]


def route_names(listeners: Mapping[str, Message]) -> set[str]:
    """Route configuration names the listeners' HTTP connection managers ask for over RDS."""
    out = set()
    for listener in listeners.values():
        assert isinstance(listener, listener_pb2.Listener)
        chains = list(listener.filter_chains)
        if listener.HasField("default_filter_chain"):
            chains.append(listener.default_filter_chain)
        for chain in chains:
            for f in chain.filters:
                if f.typed_config.type_url != _HCM_TYPE:
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                f.typed_config.Unpack(hcm)
                if hcm.HasField("rds"):
                    out.add(hcm.rds.route_config_name)
    return out


def node_proto(node: NodeInfo) -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    json_format.ParseDict(node.metadata(), metadata)
    return base_pb2.Node(id=node.node_id, cluster=node.cluster, metadata=metadata)


class AdsClient:
    """One simulated proxy on one ADS stream."""

    def __init__(
        self,
        target: str,
        node: NodeInfo | base_pb2.Node,
        *,
        delta: bool = False,
        credentials: grpc.ChannelCredentials | None = None,
        reject: RejectFn | None = None,
        hold_cds_ack: bool = True,
        shared: Shared | None = None,
        reconnect: bool = False,
    ) -> None:
        self.target = target
        self.node = node if isinstance(node, base_pb2.Node) else node_proto(node)
        self.delta = delta
        self.reject = reject
        self.hold_cds_ack = hold_cds_ack
        #: Delta only: resources already unpacked by another client of this process, by
        #: (type URL, name, version); many simulated proxies receive the same resources.
        self.shared = shared
        self.resources: dict[str, dict[str, Message]] = {t: {} for t in MESSAGE_TYPES}
        #: Delta: name -> version of each resource held, per type (what a resumed stream
        #: declares in ``initial_resource_versions``).
        self.versions: dict[str, dict[str, str]] = {t: {} for t in MESSAGE_TYPES}
        self.reconnect = reconnect
        #: Streams opened (1 after :meth:`start`; each reconnection adds one).
        self.streams = 0
        self.received: list[Received] = []
        self.error: BaseException | None = None
        self._credentials = credentials
        self._types: dict[str, _TypeState] = {t: _TypeState() for t in MESSAGE_TYPES}
        self._held_cds: tuple[str, str] | None = None
        #: cluster name -> the load assignment it needs (EDS clusters), kept up to date with
        #: each CDS response instead of recomputed from every cluster (O(changes)).
        self._eds_of: dict[str, str] = {}
        #: load assignment -> how many clusters need it; those not received yet; and the
        #: names that started or stopped being needed since the subscription was last sent
        #: (a CDS response costs O(clusters in it), not O(clusters held)).
        self._eds_refs: dict[str, int] = {}
        self._eds_missing: set[str] = set()
        self._eds_added: set[str] = set()
        self._eds_dropped: set[str] = set()
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._node_sent = False

    # -- views ---------------------------------------------------------------------------------

    @property
    def clusters(self) -> dict[str, Message]:
        return self.resources[CLUSTER_TYPE]

    @property
    def endpoints(self) -> dict[str, Message]:
        return self.resources[ENDPOINT_TYPE]

    @property
    def listeners(self) -> dict[str, Message]:
        return self.resources[LISTENER_TYPE]

    @property
    def routes(self) -> dict[str, Message]:
        return self.resources[ROUTE_TYPE]

    @property
    def virtual_hosts(self) -> dict[str, Message]:
        """VHDS: virtual hosts by resource name (``<route config>/<virtual host>``)."""
        return self.resources[VIRTUAL_HOST_TYPE]

    def route_configs(self) -> dict[str, route_pb2.RouteConfiguration]:
        """Each route config as Envoy would hold it: with VHDS, its virtual hosts merged in."""
        out: dict[str, route_pb2.RouteConfiguration] = {}
        for name, config in self.routes.items():
            assert isinstance(config, route_pb2.RouteConfiguration)
            if not config.HasField("vhds"):
                out[name] = config
                continue
            merged = route_pb2.RouteConfiguration()
            merged.CopyFrom(config)
            prefix = f"{name}/"
            for vname in sorted(self.virtual_hosts):
                if vname.startswith(prefix):
                    merged.virtual_hosts.append(self.virtual_hosts[vname])
            out[name] = merged
        return out

    def acked_version(self, type_url: str) -> str:
        return self._types[type_url].version

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._open()
        await self._subscribe(CLUSTER_TYPE, set())
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _open(self) -> None:
        """A new channel and stream (a new connection, as Envoy opens after a failure)."""
        if self._credentials is None:
            self._channel = grpc.aio.insecure_channel(self.target)
        else:
            self._channel = grpc.aio.secure_channel(self.target, self._credentials)
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        if self.delta:
            self._call = stub.DeltaAggregatedResources()
        else:
            self._call = stub.StreamAggregatedResources()
        self._node_sent = False
        self.streams += 1

    async def _resume(self) -> None:
        """Open a new stream and ask again for every type asked for before, declaring what
        is held (Delta), all at once, as Envoy does when its ADS stream is re-established."""
        old = self._channel
        self._open()
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        self._held_cds = None
        for kind in (
            CLUSTER_TYPE,
            ENDPOINT_TYPE,
            LISTENER_TYPE,
            ROUTE_TYPE,
            VIRTUAL_HOST_TYPE,
            SECRET_TYPE,
        ):
            state = self._types[kind]
            if not state.requested:
                continue
            accepted, state.nonce, state.version = state.version, "", ""
            if self.delta:
                request: Message = discovery_pb2.DeltaDiscoveryRequest(
                    type_url=kind,
                    resource_names_subscribe=sorted(state.names),
                    initial_resource_versions=self.versions[kind],
                )
            else:
                request = discovery_pb2.DiscoveryRequest(
                    type_url=kind, resource_names=sorted(state.names), version_info=accepted
                )
            await self._write(request)

    async def stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._channel is not None:
            await self._channel.close()

    async def wait_for(self, predicate: Callable[[AdsClient], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds after some response; TimeoutError otherwise."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: predicate(self) or self.error is not None), timeout
            )
        if self.error is not None and not predicate(self):
            raise RuntimeError(f"ADS stream failed: {self.error!r}")

    # -- protocol ------------------------------------------------------------------------------

    def _unpack(
        self, type_url: str, name: str, version: str, resource: discovery_pb2.Resource
    ) -> tuple[Message, str | None]:
        """The resource's message and, for a cluster, the load assignment it asks for."""
        key = (type_url, name, version)
        found = self.shared.get(key) if self.shared is not None else None
        if found is None:
            message = unpack(type_url, resource.resource)
            found = (message, eds_name(name, message) if type_url == CLUSTER_TYPE else None)
            if self.shared is not None:
                self.shared[key] = found
        return found

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                async for response in self._call:
                    attempt = 0
                    await self._on_response(response)
                    async with self._changed:
                        self._changed.notify_all()
                if not self.reconnect:
                    break
                log.debug("ADS client stream closed by the server")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("ADS client stream ended: %r", e)
                if not self.reconnect:
                    self.error = e
                    break
            # Envoy's backoff for its ADS stream: jittered exponential, 0.5 s base, 30 s max.
            await asyncio.sleep(random.uniform(0, min(30.0, 0.5 * 2**attempt)))
            attempt += 1
            try:
                await self._resume()
            except Exception as e:  # the call fails when read; counted as one attempt
                log.debug("ADS client could not resume: %r", e)
        async with self._changed:
            self._changed.notify_all()

    async def _write(self, request: Message) -> None:
        if not self._node_sent:
            request.node.CopyFrom(self.node)
            self._node_sent = True
        await self._call.write(request)

    async def _subscribe(self, type_url: str, names: set[str]) -> None:
        """Ask for ``names`` (empty: wildcard) of a type, as a first request or a change."""
        state = self._types[type_url]
        if state.requested and names == state.names:
            return
        if self.delta:
            request = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url,
                resource_names_subscribe=sorted(names - state.names),
                resource_names_unsubscribe=sorted(state.names - names),
            )
            for gone in state.names - names:
                self.resources[type_url].pop(gone, None)
                self.versions[type_url].pop(gone, None)
        else:
            request = discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                resource_names=sorted(names),
                version_info=state.version,
                response_nonce=state.nonce,
            )
        state.names, state.requested = set(names), True
        await self._write(request)

    async def _answer(self, type_url: str, version: str, nonce: str, error: str | None) -> None:
        state = self._types[type_url]
        if error is None:
            state.version = version
        state.nonce = nonce
        detail = status_pb2.Status(code=3, message=error) if error is not None else None
        if self.delta:
            request: Message = discovery_pb2.DeltaDiscoveryRequest(
                type_url=type_url, response_nonce=nonce, error_detail=detail
            )
        else:
            request = discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                resource_names=sorted(state.names),
                version_info=state.version,
                response_nonce=nonce,
                error_detail=detail,
            )
        await self._write(request)

    async def _on_response(self, response: Any) -> None:
        type_url = response.type_url
        if type_url not in self._types:
            log.debug("ignoring response of unknown type %s", type_url)
            return
        # Each resource's name and version are read once (every read decodes them again):
        # a simulated proxy's first clusters are thousands of resources, and a benchmark's
        # process holds a thousand proxies, whose decoding must not be what it measures.
        eds_of: dict[str, str | None] = {}
        held: dict[str, str] = {}
        if self.delta:
            version = response.system_version_info
            incoming: dict[str, Message] = {}
            for r in response.resources:
                name, held[name] = r.name, r.version
                incoming[name], eds_of[name] = self._unpack(type_url, name, held[name], r)
            removed = tuple(response.removed_resources)
        else:
            version = response.version_info
            incoming = {}
            for packed in response.resources:
                message = unpack(type_url, packed)
                incoming[resource_name(message) or str(len(incoming))] = message
            if type_url == CLUSTER_TYPE:
                eds_of = {name: eds_name(name, c) for name, c in incoming.items()}
            removed = ()
        error = self.reject(type_url, incoming) if self.reject else None
        self.received.append(
            Received(
                type_url,
                version,
                response.nonce,
                time.monotonic(),
                tuple(incoming),
                removed,
                nacked=error is not None,
            )
        )
        if error is not None:
            await self._answer(type_url, version, response.nonce, error)
            return
        store = self.resources[type_url]
        if self.delta:
            store.update(incoming)
            versions = self.versions[type_url]
            versions.update(held)
            for name in removed:
                store.pop(name, None)
                versions.pop(name, None)
        else:
            store.clear()
            store.update(incoming)
        if type_url == CLUSTER_TYPE:
            if not self.delta:
                for name in list(self._eds_of):
                    self._need(name, None)
            for name in removed:
                self._need(name, None)
            for name, eds in eds_of.items():
                self._need(name, eds)
        elif type_url == ENDPOINT_TYPE:
            if self.delta:
                self._eds_missing.difference_update(incoming)
                self._eds_missing.update(n for n in removed if n in self._eds_refs)
            else:
                self._eds_missing = {n for n in self._eds_refs if n not in store}
        await self._after_update(type_url, version, response.nonce)

    def _need(self, cluster: str, eds: str | None) -> None:
        """Cluster ``cluster`` now needs load assignment ``eds`` (None: none, or it is gone)."""
        old = self._eds_of.pop(cluster, None)
        if old is not None:
            left = self._eds_refs[old] - 1
            if left:
                self._eds_refs[old] = left
            else:
                del self._eds_refs[old]
                self._eds_missing.discard(old)
                if old in self._eds_added:
                    self._eds_added.discard(old)
                else:
                    self._eds_dropped.add(old)
        if eds is None:
            return
        self._eds_of[cluster] = eds
        count = self._eds_refs.get(eds, 0)
        self._eds_refs[eds] = count + 1
        if count == 0:
            if eds not in self.endpoints:
                self._eds_missing.add(eds)
            if eds in self._eds_dropped:
                self._eds_dropped.discard(eds)
            else:
                self._eds_added.add(eds)

    async def _subscribe_endpoints(self) -> None:
        """Subscribe to the load assignments the clusters need: over Delta, only what changed
        since the last request (O(change)); else the whole set."""
        added, dropped = self._eds_added, self._eds_dropped
        self._eds_added, self._eds_dropped = set(), set()
        state = self._types[ENDPOINT_TYPE]
        if not self.delta or not state.requested:
            await self._subscribe(ENDPOINT_TYPE, set(self._eds_refs))
            return
        added -= state.names
        dropped &= state.names
        if not added and not dropped:
            return
        for gone in dropped:
            self.resources[ENDPOINT_TYPE].pop(gone, None)
        state.names |= added
        state.names -= dropped
        await self._write(
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=ENDPOINT_TYPE,
                resource_names_subscribe=sorted(added),
                resource_names_unsubscribe=sorted(dropped),
            )
        )

    async def _after_update(self, type_url: str, version: str, nonce: str) -> None:
        if type_url == CLUSTER_TYPE:
            await self._subscribe_endpoints()
            if self.hold_cds_ack and self._eds_missing:
                self._held_cds = (version, nonce)
            else:
                await self._answer(type_url, version, nonce, None)
            if not self._types[LISTENER_TYPE].requested and self._held_cds is None:
                await self._subscribe(LISTENER_TYPE, set())
            return
        await self._answer(type_url, version, nonce, None)
        if type_url == ENDPOINT_TYPE and self._held_cds is not None:
            if not self._eds_missing:
                held, self._held_cds = self._held_cds, None
                await self._answer(CLUSTER_TYPE, held[0], held[1], None)
                if not self._types[LISTENER_TYPE].requested:
                    await self._subscribe(LISTENER_TYPE, set())
        elif type_url == LISTENER_TYPE:
            await self._subscribe(ROUTE_TYPE, route_names(self.listeners))
        elif (
            type_url == ROUTE_TYPE
            and self.delta
            and any(r.HasField("vhds") for r in self.routes.values())
        ):
            # As Envoy: a route config with ``vhds`` opens the VHDS subscription (wildcard).
            await self._subscribe(VIRTUAL_HOST_TYPE, set())
