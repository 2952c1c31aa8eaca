"""Sidecars that registered themselves by connecting over xDS: an in-memory workload source.

The xDS server calls ``connected(node)`` when a sidecar's stream opens and
``disconnected(node)`` when it closes. Each connected sidecar is a workload (uid
``Sidecar/NAMESPACE/POD``) with the labels, service account and IP its node carries; in NONE
(explicit) mode its endpoint port for a service target port ``T`` is ``inbound_ports[T]``.
Routers are not workloads. A sidecar with the same namespace/name as a runtime-reported Pod
replaces that pod in the registry (it knows the port mapping).

Several streams may come from the same proxy (reconnects overlap): the source counts them
and forgets the workload only when the last one closes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pilotfish.api.node import NodeInfo
from pilotfish.api.workloads import locality_from_labels
from pilotfish.registry.types import Workload


def workload_from_node(node: NodeInfo) -> Workload:
    return Workload(
        uid=f"Sidecar/{node.namespace}/{node.pod_name}",
        name=node.pod_name,
        namespace=node.namespace,
        address=node.ip,
        labels=dict(node.labels),
        service_account=node.service_account,
        healthy=True,
        port_map=dict(node.inbound_ports) if node.interception_mode == "NONE" else {},
        has_sidecar=True,
        workload_name=node.workload_name or node.pod_name,
        locality=locality_from_labels(node.labels),
    )


class ConnectedSidecars:
    """Thread-safe set of connected sidecars. ``version`` grows on every change.

    Each sidecar's :class:`Workload` is made once, when it connects, and the same object is
    returned until it changes: a registry snapshot costs a lookup per sidecar, and endpoints
    of unchanged services are recognized by identity (``build_endpoints``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, tuple[NodeInfo, int, Workload]] = {}
        self._listeners: list[Callable[[], None]] = []
        self.version = 0

    def connected(self, node: NodeInfo) -> None:
        if node.proxy_type != "sidecar":
            return
        key = f"{node.namespace}/{node.pod_name}"
        with self._lock:
            prev = self._nodes.get(key)
            count = prev[1] + 1 if prev else 1
            changed = prev is None or prev[0] != node
            workload = workload_from_node(node) if prev is None or changed else prev[2]
            self._nodes[key] = (node, count, workload)
            if changed:
                self.version += 1
        if changed:
            self._notify()

    def disconnected(self, node: NodeInfo) -> None:
        key = f"{node.namespace}/{node.pod_name}"
        with self._lock:
            prev = self._nodes.get(key)
            if prev is None:
                return
            if prev[1] > 1:
                self._nodes[key] = (prev[0], prev[1] - 1, prev[2])
                return
            del self._nodes[key]
            self.version += 1
        self._notify()

    def is_connected(self, node: NodeInfo) -> bool:
        """Whether a proxy with ``node``'s namespace/name has a stream open."""
        with self._lock:
            return f"{node.namespace}/{node.pod_name}" in self._nodes

    def nodes(self) -> list[NodeInfo]:
        """The nodes of the connected sidecars, one per namespace/name."""
        with self._lock:
            return [n for n, _, _ in self._nodes.values()]

    def workloads(self) -> list[Workload]:
        with self._lock:
            return [w for _, _, w in self._nodes.values()]

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change; returns an unsubscribe function."""
        self._listeners.append(callback)

        def cancel() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return cancel

    def _notify(self) -> None:
        for cb in list(self._listeners):
            cb()
