"""Sidecar scoping: which services, hosts and ports a sidecar proxy may see, as Istio resolves
the ``Sidecar`` resource (``networking.istio.io``).

Which ``Sidecar`` applies to a proxy (Istio's order):

1. a Sidecar of the proxy's namespace whose ``workloadSelector`` matches its labels (the
   oldest first, then by name);
2. else the namespace-wide Sidecar of its namespace (no ``workloadSelector``; the oldest);
3. else the mesh default: the Sidecar without ``workloadSelector`` in the root namespace
   (``rootNamespace`` of the mesh config), read as if written in the proxy's namespace
   (``./*`` is the proxy's namespace);
4. else none: the proxy sees every service exported to its namespace.

What a scope holds (``SidecarScope``):

- the services the proxy may reach: exported to its namespace (``exportTo``) and matched by
  an ``egress`` listener's ``hosts`` (``ns/host``, ``./host``, ``*/host``; ``~/*`` imports
  nothing), plus the destinations of the VirtualServices for those hosts (as Istio adds
  them, so a route never names a cluster the proxy lacks);
- per port, the egress listener that serves it (the one with that port, else the catch-all
  without ``port``), and the services routed on that port;
- the ``outboundTrafficPolicy`` mode: the Sidecar's, else the mesh config's; under
  ALLOW_ANY, its ``egressProxy`` (what is not in scope goes there instead of out directly);
- the ``ingress`` listeners (port, ``defaultEndpoint``, ``tls``) that replace the inbound
  ports of the proxy's services, and the connection pools of the inbound clusters
  (``ingress[].connectionPool``, else ``inboundConnectionPool``).

``sidecar_scope(push, namespace, labels)`` is pure and memoized in the PushContext per
``(namespace, Sidecar)``: every proxy with the same Sidecar shares one scope. ``scope.key``
identifies it in other memo keys (clusters, route configs, listeners).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import pydantic

from pilotfish.api.destinationrule import ConnectionPoolSettings
from pilotfish.api.hosts import host_matches, split_server_host
from pilotfish.api.networking import IstioIngressListener, ServerTLSSettings, SidecarSpec
from pilotfish.config.store.base import Key, StoredObject
from pilotfish.model.push_context import PushContext
from pilotfish.registry.types import Service

__all__ = [
    "EgressListener",
    "IngressListener",
    "SidecarConfig",
    "SidecarScope",
    "select_sidecar",
    "sidecar_configs",
    "sidecar_scope",
]

log = logging.getLogger(__name__)

ALLOW_ANY = "ALLOW_ANY"
REGISTRY_ONLY = "REGISTRY_ONLY"


@dataclass(frozen=True, slots=True)
class EgressListener:
    """One ``egress`` entry: hosts as ``(namespace or '*' or '~', host pattern)``."""

    port: int | None
    protocol: str | None
    bind: str | None
    capture_mode: str | None
    hosts: tuple[tuple[str, str], ...]

    def imports(self, svc: Service) -> bool:
        """Does this listener import ``svc`` (by its namespace and hostname)?"""
        for ns, pattern in self.hosts:
            if ns == "~":
                continue
            if ns not in ("*", svc.namespace):
                continue
            if host_matches(pattern, svc.hostname):
                return True
        return False


@dataclass(frozen=True, slots=True)
class IngressListener:
    """One ``ingress`` entry: traffic arriving on ``port`` goes to ``endpoint_port`` of the
    app (``defaultEndpoint``), on localhost or the workload's own address."""

    port: int
    protocol: str | None
    name: str | None
    #: ``127.0.0.1`` (loopback), ``0.0.0.0`` (the workload's address), or None when unset.
    endpoint_host: str | None
    endpoint_port: int | None
    #: ``bind``: the address a proxy without capture listens on for this port.
    bind: str | None = None
    #: ``tls``: the sidecar terminates TLS with these settings where mesh mTLS is off.
    tls: ServerTLSSettings | None = field(default=None, compare=False, hash=False)
    #: ``connectionPool``: the inbound cluster's, over the Sidecar's ``inboundConnectionPool``.
    connection_pool: ConnectionPoolSettings | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class SidecarConfig:
    """A stored Sidecar, parsed; ``namespace`` is where ``.`` points (see the module doc)."""

    key: Key
    revision: int
    creation: str
    selector: dict[str, str] | None
    egress: tuple[EgressListener, ...]
    ingress: tuple[IngressListener, ...]
    outbound_traffic_policy: str | None
    inbound_connection_pool: ConnectionPoolSettings | None = field(
        default=None, compare=False, hash=False
    )
    #: ``outboundTrafficPolicy.egressProxy`` as ``(host, port, subset)``.
    egress_proxy: tuple[str, int, str] | None = None

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


def _ingress(ing: IstioIngressListener) -> IngressListener:
    host: str | None = None
    port: int | None = None
    endpoint = ing.defaultEndpoint or ""
    if endpoint and not endpoint.startswith("unix://"):
        h, _, p = endpoint.rpartition(":")
        h = h.strip("[]")
        host = "0.0.0.0" if h in ("0.0.0.0", "::", "") else "127.0.0.1"
        port = int(p) if p.isdigit() else None
    return IngressListener(
        port=ing.port.number,
        protocol=ing.port.protocol,
        name=ing.port.name,
        endpoint_host=host,
        endpoint_port=port,
        bind=ing.bind or None,
        tls=ing.tls,
        connection_pool=ing.connectionPool,
    )


def parse_sidecar(obj: StoredObject, namespace: str | None = None) -> SidecarConfig:
    """A stored Sidecar; ``.`` in its hosts means ``namespace`` (default: its own)."""
    spec = SidecarSpec.model_validate(obj.body.get("spec") or {})
    own = namespace or obj.namespace
    egress = tuple(
        EgressListener(
            port=eg.port.number if eg.port is not None and eg.port.number else None,
            protocol=eg.port.protocol if eg.port is not None else None,
            bind=eg.bind or None,
            capture_mode=eg.captureMode,
            hosts=tuple(split_server_host(h, own) for h in eg.hosts),
        )
        for eg in spec.egress
    )
    selector = spec.workloadSelector.labels if spec.workloadSelector is not None else None
    otp = spec.outboundTrafficPolicy
    return SidecarConfig(
        key=obj.key,
        revision=obj.revision,
        creation=str((obj.body.get("metadata") or {}).get("creationTimestamp") or ""),
        selector=dict(selector) if selector else None,
        egress=egress,
        ingress=tuple(_ingress(i) for i in spec.ingress),
        outbound_traffic_policy=otp.mode if otp is not None else None,
        inbound_connection_pool=spec.inboundConnectionPool,
        egress_proxy=_egress_proxy(spec),
    )


def _egress_proxy(spec: SidecarSpec) -> tuple[str, int, str] | None:
    otp = spec.outboundTrafficPolicy
    proxy = otp.egressProxy if otp is not None else None
    if proxy is None or proxy.port is None or not proxy.port.number:
        return None
    return (proxy.host, proxy.port.number, proxy.subset or "")


def sidecar_configs(push: PushContext) -> tuple[SidecarConfig, ...]:
    """Every stored Sidecar, parsed, oldest first (then namespace/name)."""

    def compute() -> tuple[SidecarConfig, ...]:
        out = []
        for obj in push.objects("Sidecar"):
            try:
                out.append(parse_sidecar(obj))
            except pydantic.ValidationError as exc:
                log.warning("%s ignored: %s", obj.key, exc)
        out.sort(key=lambda s: (s.creation, s.namespace, s.name))
        return tuple(out)

    return push.memo(("sidecar_configs",), compute)


def select_sidecar(
    push: PushContext, namespace: str, labels: Mapping[str, str]
) -> SidecarConfig | None:
    """The Sidecar that applies to a proxy of ``namespace`` with ``labels`` (see the module
    doc); a root-namespace default comes back re-read in ``namespace``."""
    configs = sidecar_configs(push)
    own = [s for s in configs if s.namespace == namespace]
    for s in own:
        if s.selector and all(labels.get(k) == v for k, v in s.selector.items()):
            return s
    for s in own:
        if not s.selector:
            return s
    root = push.settings.root_namespace
    for s in configs:
        if s.namespace == root and not s.selector:
            if namespace == root:
                return s
            obj = next(o for o in push.objects("Sidecar") if o.key == s.key)
            return push.memo(
                ("sidecar_in", s.key, s.revision, namespace),
                functools.partial(parse_sidecar, obj, namespace),
            )
    return None


@dataclass(frozen=True)
class SidecarScope:
    """What one proxy may see (see the module doc). Immutable; shared through the memo."""

    namespace: str
    sidecar: SidecarConfig | None
    #: Every service in scope, ordered by hostname.
    services: tuple[Service, ...]
    #: ``ALLOW_ANY`` or ``REGISTRY_ONLY``.
    outbound_traffic_policy: str
    _by_port: dict[int, tuple[Service, ...]] = field(default_factory=dict, repr=False)
    _hosts_by_port: dict[int, frozenset[str]] = field(default_factory=dict, repr=False)

    @property
    def key(self) -> Hashable:
        """Identifies this scope in memo keys: proxies with the same key see the same."""
        if self.sidecar is None:
            return (self.namespace, None, self.outbound_traffic_policy)
        return (self.namespace, self.sidecar.key, self.sidecar.revision)

    @property
    def hostnames(self) -> frozenset[str]:
        return self._hostnames

    @functools.cached_property
    def _hostnames(self) -> frozenset[str]:
        return frozenset(s.hostname for s in self.services)

    def includes(self, hostname: str) -> bool:
        return hostname in self.hostnames

    @property
    def registry_only(self) -> bool:
        return self.outbound_traffic_policy == REGISTRY_ONLY

    @property
    def egress_proxy(self) -> tuple[str, int, str] | None:
        """Where ALLOW_ANY sends what is not in scope instead of passing it through: the
        Sidecar's ``egressProxy`` as ``(host, port, subset)`` (None: pass through)."""
        if self.sidecar is None or self.registry_only:
            return None
        return self.sidecar.egress_proxy

    @property
    def ingress(self) -> tuple[IngressListener, ...]:
        return self.sidecar.ingress if self.sidecar is not None else ()

    def inbound_connection_pool(self, port: int) -> ConnectionPoolSettings | None:
        """The connection pool of the inbound cluster of app port ``port``, as Istio's
        ``InboundConnectionPoolForPort``: the ``connectionPool`` of the ``ingress`` listener
        on that port, else the Sidecar's ``inboundConnectionPool`` (every inbound port)."""
        if self.sidecar is None:
            return None
        for ing in self.sidecar.ingress:
            if ing.port == port and ing.connection_pool is not None:
                return ing.connection_pool
        return self.sidecar.inbound_connection_pool

    def egress_for(self, port: int) -> EgressListener | None:
        """The egress listener that serves ``port``: the one with that port, else the
        catch-all (None without a Sidecar, or when no listener serves the port)."""
        if self.sidecar is None:
            return None
        catch_all = None
        for eg in self.sidecar.egress:
            if eg.port == port:
                return eg
            if eg.port is None:
                catch_all = eg
        return catch_all

    def services_on_port(self, port: int) -> tuple[Service, ...]:
        """The services routed on ``port`` (they have that port and the listener serving the
        port imports them), ordered by hostname."""
        found = self._by_port.get(port)
        if found is not None:
            return found
        return tuple(s for s in self.services if s.port(port) is not None)

    def on_port(self, svc: Service, port: int) -> bool:
        """Is ``svc`` routed on ``port`` (see ``services_on_port``)?"""
        hosts = self._hosts_by_port.get(port)
        if hosts is None:
            return svc.port(port) is not None and (
                self.sidecar is None or not self._by_port or svc.hostname in self.hostnames
            )
        return svc.hostname in hosts

    def bound_egress(self) -> tuple[EgressListener, ...]:
        """Egress listeners with ``captureMode: NONE``: real listeners the app connects to."""
        if self.sidecar is None:
            return ()
        return tuple(e for e in self.sidecar.egress if e.port and e.capture_mode == "NONE")


def _mesh_policy(push: PushContext) -> str:
    return push.settings.outbound_traffic_policy


def _destinations(push: PushContext, namespace: str, hostname: str) -> list[str]:
    """Hosts the VirtualService of ``hostname`` (seen from ``namespace``) routes to."""
    vs = push.mesh_virtual_service(hostname, namespace)
    if vs is None:
        return []
    out = []
    suffix = push.settings.domain_suffix
    for http in vs.http:
        for hd in http.route:
            out.append(vs.resolve(hd.destination.host, suffix))
        if http.mirror is not None:
            out.append(vs.resolve(http.mirror.host, suffix))
        for m in http.mirrors:
            out.append(vs.resolve(m.destination.host, suffix))
    for tcp in vs.tcp:
        for rd in tcp.route:
            out.append(vs.resolve(rd.destination.host, suffix))
    for tls in vs.tls:
        for rd in tls.route:
            out.append(vs.resolve(rd.destination.host, suffix))
    return out


def _compute(push: PushContext, namespace: str, sc: SidecarConfig | None) -> SidecarScope:
    visible = push.visible_services(namespace)
    policy = (sc.outbound_traffic_policy if sc else None) or _mesh_policy(push)
    if sc is None:
        return SidecarScope(namespace, None, visible, policy)
    by_host = {s.hostname: s for s in visible}

    def with_destinations(imported: list[Service]) -> list[Service]:
        names = {s.hostname for s in imported}
        out = list(imported)
        for s in imported:
            for host in _destinations(push, namespace, s.hostname):
                dest = by_host.get(host)
                if dest is not None and host not in names:
                    names.add(host)
                    out.append(dest)
        return sorted(out, key=lambda s: s.hostname)

    every: dict[str, Service] = {}
    by_port: dict[int, tuple[Service, ...]] = {}
    ports = sorted({p.port for s in visible for p in s.ports})
    per_listener: dict[int, list[Service]] = {}
    for i, eg in enumerate(sc.egress):
        imported = with_destinations([s for s in visible if eg.imports(s)])
        per_listener[i] = imported
        for s in imported:
            every[s.hostname] = s
    for port in ports:
        listener = None
        for i, eg in enumerate(sc.egress):
            if eg.port == port:
                listener = i
                break
        if listener is None:
            listener = next((i for i, eg in enumerate(sc.egress) if eg.port is None), None)
        if listener is None:
            by_port[port] = ()
            continue
        by_port[port] = tuple(s for s in per_listener[listener] if s.port(port) is not None)
    if not sc.egress:
        # A Sidecar with only ingress (or only a policy) keeps Istio's default egress: */*.
        every = dict(by_host)
        by_port = {}
    services = tuple(sorted(every.values(), key=lambda s: s.hostname))
    hosts = {p: frozenset(s.hostname for s in v) for p, v in by_port.items()}
    return SidecarScope(namespace, sc, services, policy, by_port, hosts)


def sidecar_scope(push: PushContext, namespace: str, labels: Mapping[str, str]) -> SidecarScope:
    """The scope of a sidecar proxy of ``namespace`` with ``labels`` at ``push``'s revision."""
    sc = select_sidecar(push, namespace, labels)
    key = ("sidecar_scope", namespace, (sc.key, sc.revision) if sc else None)
    return push.memo(key, lambda: _compute(push, namespace, sc))
