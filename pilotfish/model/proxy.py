"""Proxy: one connected Envoy as the translators see it, built from its NodeInfo.

A proxy knows who it is (node id, type ``sidecar``/``router``, namespace, labels, workload,
IP, SPIFFE identity, interception mode) and, for sidecars, which services it serves: the
services of its namespace whose selector matches its labels, with each service port's target
(app) port. Those drive the inbound listeners and ``inbound|PORT||`` clusters. A sidecar also
carries its ``SidecarScope`` (:mod:`pilotfish.model.sidecar`): what it may see outbound, and
the ``ingress`` listeners that replace its inbound ports.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.api.node import InterceptionMode, NodeInfo, ProxyType
from pilotfish.model.push_context import PushContext
from pilotfish.model.sidecar import SidecarScope, sidecar_scope
from pilotfish.registry.types import Service, ServicePort


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """This proxy serving ``port`` of ``service`` on app port ``target_port``."""

    service: Service
    port: ServicePort
    target_port: int


def own_named_ports(push: PushContext, node: NodeInfo) -> dict[str, int]:
    """The container port names of the proxy's own workload (its Pod's, then what its
    connected sidecar adds): what a sidecar's configuration reads of its own workload, with
    its locality (``translate.clusters.proxy_locality``)."""
    named: dict[str, int] = {}
    pod = push.registry.workloads.get(f"Pod/{node.namespace}/{node.pod_name}")
    sidecar = push.registry.workloads.get(f"Sidecar/{node.namespace}/{node.pod_name}")
    for w in (pod, sidecar):
        if w is not None:
            named.update(w.named_ports)
    return named


@dataclass(frozen=True)
class Proxy:
    node: NodeInfo
    instances: tuple[ServiceInstance, ...] = ()
    #: What a sidecar may see (the ``Sidecar`` resource that applies); None for routers.
    scope: SidecarScope | None = None

    def sidecar_scope(self, push: PushContext) -> SidecarScope:
        """This proxy's scope (computed when the proxy was built without one)."""
        if self.scope is not None:
            return self.scope
        return sidecar_scope(push, self.namespace, self.labels)

    @property
    def id(self) -> str:
        return self.node.node_id

    @property
    def type(self) -> ProxyType:
        return self.node.proxy_type

    @property
    def is_router(self) -> bool:
        return self.node.proxy_type == "router"

    @property
    def namespace(self) -> str:
        return self.node.namespace

    @property
    def labels(self) -> dict[str, str]:
        return self.node.labels

    @property
    def workload_name(self) -> str:
        return self.node.workload_name or self.node.pod_name

    @property
    def ip(self) -> str:
        return self.node.ip

    @property
    def identity(self) -> str:
        return self.node.spiffe_id

    @property
    def interception_mode(self) -> InterceptionMode:
        return self.node.interception_mode

    @property
    def services(self) -> tuple[Service, ...]:
        seen: dict[str, Service] = {}
        for inst in self.instances:
            seen.setdefault(inst.service.hostname, inst.service)
        return tuple(seen.values())

    def target_ports(self) -> list[int]:
        """Distinct app ports this proxy serves, in ascending order."""
        return sorted({i.target_port for i in self.instances})

    def instance_for_target(self, target: int) -> ServiceInstance | None:
        for inst in self.instances:
            if inst.target_port == target:
                return inst
        return None

    @classmethod
    def from_node(cls, node: NodeInfo, push: PushContext) -> Proxy:
        if node.proxy_type == "router":
            return cls(node)
        named = own_named_ports(push, node)

        def compute() -> tuple[ServiceInstance, ...]:
            instances = []
            for svc in push.services_selecting(node.namespace, node.labels):
                for sp in svc.ports:
                    instances.append(ServiceInstance(svc, sp, sp.target_number(named)))
            return tuple(instances)

        # Shared by the proxies of one namespace with the same labels and named ports.
        key = (
            "proxy_instances",
            node.namespace,
            tuple(sorted(node.labels.items())),
            tuple(sorted(named.items())),
        )
        # Carried over to the next context while the service definitions are the same (a
        # push after a config change does not select services again for every proxy).
        instances = push.reuse(key, push.services_epoch, compute)
        return cls(node, instances, sidecar_scope(push, node.namespace, node.labels))
