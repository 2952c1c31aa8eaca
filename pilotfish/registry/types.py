"""The registry's vocabulary: services, their ports, workloads and endpoints.

A ``Service`` is what clients address (a hostname, a VIP, ports); a ``Workload`` is something
that runs and can serve (a pod, a WorkloadEntry, a connected sidecar, a ServiceEntry endpoint);
an ``Endpoint`` is one workload serving one port of one service (address, port, labels,
identity, health). All are frozen: the registry builds new ones instead of changing them.

Protocol selection follows Istio's explicit rules: ``appProtocol`` first, then the port name
(``http``, ``http-*``, ``http2-*``, ``grpc-*``, ``grpc-web-*``, ``tcp-*``, ``tls-*``,
``https-*``, ``mongo-*``, ``mysql-*``, ``redis-*``), and TCP otherwise. Istio sniffs unnamed
ports on Kubernetes; Pilotfish does not sniff: name the port (``http``/``http-...``) or set
``appProtocol`` to get HTTP routing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pilotfish.api.mesh import visible


class Protocol(StrEnum):
    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    GRPC_WEB = "GRPC-Web"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"
    MONGO = "Mongo"
    MYSQL = "MySQL"
    REDIS = "Redis"
    UDP = "UDP"

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)

    @property
    def is_http2(self) -> bool:
        return self in (Protocol.HTTP2, Protocol.GRPC, Protocol.GRPC_WEB)


_PREFIXES: dict[str, Protocol] = {
    "http": Protocol.HTTP,
    "http2": Protocol.HTTP2,
    "h2c": Protocol.HTTP2,
    "grpc": Protocol.GRPC,
    "grpc-web": Protocol.GRPC_WEB,
    "https": Protocol.HTTPS,
    "tls": Protocol.TLS,
    "tcp": Protocol.TCP,
    "mongo": Protocol.MONGO,
    "mysql": Protocol.MYSQL,
    "redis": Protocol.REDIS,
    "udp": Protocol.UDP,
}


def parse_protocol(value: str | None) -> Protocol | None:
    """Istio's protocol names (any case), or None when unknown/empty."""
    if not value:
        return None
    v = value.lower()
    # appProtocol may be a Kubernetes standard name such as "kubernetes.io/h2c".
    v = v.rsplit("/", 1)[-1]
    return _PREFIXES.get(v)


def select_protocol(port_name: str | None, app_protocol: str | None = None) -> Protocol:
    """Istio's explicit protocol selection: appProtocol, then ``<protocol>[-<suffix>]`` names."""
    explicit = parse_protocol(app_protocol)
    if explicit is not None:
        return explicit
    name = (port_name or "").lower()
    if name.startswith("grpc-web"):
        return Protocol.GRPC_WEB
    prefix = name.split("-", 1)[0]
    return _PREFIXES.get(prefix, Protocol.TCP)


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of a service. ``target_port`` is a number or a named container port."""

    name: str
    port: int
    protocol: Protocol
    target_port: int | str | None = None

    def target_number(self, named: dict[str, int] | None = None) -> int:
        """The workload port this service port reaches (named ports looked up in ``named``)."""
        if isinstance(self.target_port, int):
            return self.target_port
        if isinstance(self.target_port, str) and self.target_port:
            if self.target_port.isdigit():
                return int(self.target_port)
            if named and self.target_port in named:
                return named[self.target_port]
        return self.port


Resolution = str  # "STATIC" | "DNS" | "DNS_ROUND_ROBIN" | "NONE" (Istio's ServiceEntry terms)


@dataclass(frozen=True, slots=True)
class Service:
    """A service clients can address, from a Kubernetes-shaped Service or a ServiceEntry host."""

    hostname: str  # FQDN (reviews.default.svc.cluster.local) or a ServiceEntry host
    namespace: str
    name: str
    ports: tuple[ServicePort, ...]
    vip: str | None = None
    selector: dict[str, str] | None = None  # None: no selector (endpoints come otherwise)
    resolution: Resolution = "STATIC"
    mesh_external: bool = False
    #: ``Service``, or ``ServiceEntry`` for entries; ``source_name`` is the object's name.
    source_kind: str = "Service"
    source_name: str = ""
    export_to: tuple[str, ...] = ("*",)
    #: Extra addresses a ServiceEntry declares (CIDRs included); ``vip`` is the first usable one.
    addresses: tuple[str, ...] = ()
    #: A ServiceEntry's ``subjectAltNames``: identities its endpoints' certificates may carry
    #: besides their service accounts (Istio's ``Service.ServiceAccounts``).
    subject_alt_names: tuple[str, ...] = ()

    @property
    def is_wildcard(self) -> bool:
        return self.hostname.startswith("*")

    def port(self, number: int) -> ServicePort | None:
        for p in self.ports:
            if p.port == number:
                return p
        return None

    def port_by_name(self, name: str) -> ServicePort | None:
        for p in self.ports:
            if p.name == name:
                return p
        return None

    def visible_from(self, namespace: str) -> bool:
        """exportTo: ``*`` everywhere, ``.`` own namespace, else listed namespaces."""
        return visible(self.export_to, self.namespace, namespace)


@dataclass(frozen=True, slots=True)
class Workload:
    """Something running that can serve: a pod, WorkloadEntry, sidecar or ServiceEntry endpoint.

    ``port_map`` maps an app (target) port to the port to dial instead (NONE-mode sidecars
    receive on ``inbound_ports[target]``; ServiceEntry endpoints may remap ports).
    ``named_ports`` resolves named targetPorts (container port names).
    """

    uid: str  # unique among workloads: "Pod/ns/name", "WorkloadEntry/ns/name", "Sidecar/ns/name"
    name: str
    namespace: str
    address: str
    labels: dict[str, str] = field(default_factory=dict)
    service_account: str = "default"
    healthy: bool = True
    locality: str = ""
    network: str = ""
    weight: int = 0
    port_map: dict[int, int] = field(default_factory=dict)
    named_ports: dict[str, int] = field(default_factory=dict)
    #: WorkloadEntry/ServiceEntry endpoint ``ports``: service port *name* -> port to dial.
    endpoint_ports: dict[str, int] = field(default_factory=dict)
    #: True when an Envoy sidecar runs next to the app (connected over xDS or injected pod).
    has_sidecar: bool = False
    #: Istio's workload name (a pod's Deployment; else the object's name).
    workload_name: str = ""

    def dial_port(self, target: int) -> int:
        return self.port_map.get(target, target)

    def matches(self, selector: dict[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One workload serving one port of one service."""

    address: str
    port: int  # the port to dial
    target_port: int  # the app port (equal to ``port`` unless remapped)
    service_port: int
    labels: dict[str, str]
    namespace: str
    service_account: str
    healthy: bool = True
    locality: str = ""
    weight: int = 0
    workload_uid: str = ""
    has_sidecar: bool = False
    #: Istio's workload name (``destination_workload`` in metrics).
    workload_name: str = ""

    def matches(self, selector: dict[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in selector.items())
