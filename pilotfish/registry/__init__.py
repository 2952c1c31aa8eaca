"""Service discovery: services, workloads and endpoints from every source, as snapshots.

Public surface: ``Registry`` (``snapshot(objects)``), ``RegistrySnapshot``, ``Service``,
``ServicePort``, ``Protocol``, ``Workload``, ``Endpoint``, ``ConnectedSidecars`` (fed by the
xDS server), ``VipAllocator`` and ``changed_services``.
"""

from pilotfish.registry.registry import (
    REGISTRY_KINDS,
    Registry,
    RegistrySettings,
    RegistrySnapshot,
    changed_services,
)
from pilotfish.registry.sidecars import ConnectedSidecars, workload_from_node
from pilotfish.registry.types import (
    Endpoint,
    Protocol,
    Service,
    ServicePort,
    Workload,
    select_protocol,
)
from pilotfish.registry.vip import VipAllocator, VipSettings

__all__ = [
    "REGISTRY_KINDS",
    "ConnectedSidecars",
    "Endpoint",
    "Protocol",
    "Registry",
    "RegistrySettings",
    "RegistrySnapshot",
    "Service",
    "ServicePort",
    "VipAllocator",
    "VipSettings",
    "Workload",
    "changed_services",
    "select_protocol",
    "workload_from_node",
]
