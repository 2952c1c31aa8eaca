"""The registry: every source of services and workloads combined into one snapshot.

Sources: Kubernetes-shaped ``Service`` objects, ``ServiceEntry`` (hosts, inline endpoints,
workloadSelector), runtime-reported ``Pod`` objects, ``WorkloadEntry`` objects and sidecars
connected over xDS (``ConnectedSidecars``). ``Registry.snapshot(objects)`` turns the stored
objects of one revision (plus the connected sidecars of the moment) into an immutable
``RegistrySnapshot``; conversions of unchanged objects (same key and revision) are reused.
``changed_services(old, new)`` tells which hostnames differ (service or endpoints), for
incremental pushes.

Conflicts: a hostname defined by both a Service and a ServiceEntry is the Service's; among
ServiceEntries the oldest object (lowest revision, then namespace/name) wins, as in Istio.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, service_fqdn
from pilotfish.config.store.base import StoredObject
from pilotfish.registry.convert import (
    service_from_k8s,
    workload_from_pod,
    workload_from_workload_entry,
)
from pilotfish.registry.serviceentry import (
    services_from_service_entry,
    status_addresses,
    workloads_from_service_entry,
)
from pilotfish.registry.sidecars import ConnectedSidecars
from pilotfish.registry.types import Endpoint, Service, ServicePort, Workload
from pilotfish.registry.vip import VipAllocator

REGISTRY_KINDS = frozenset({"Service", "ServiceEntry", "Pod", "WorkloadEntry"})


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX


@dataclass(frozen=True)
class RegistrySnapshot:
    """Services by hostname and their endpoints by ``(hostname, service port)``."""

    services: Mapping[str, Service] = field(default_factory=dict)
    endpoints: Mapping[tuple[str, int], tuple[Endpoint, ...]] = field(default_factory=dict)
    workloads: Mapping[str, Workload] = field(default_factory=dict)

    def endpoints_of(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        return self.endpoints.get((hostname, port), ())

    def services_of_workload(self, workload: Workload) -> list[Service]:
        """Services whose selector picks ``workload`` (same namespace)."""
        out = []
        for svc in self.services.values():
            if (
                svc.selector
                and svc.namespace == workload.namespace
                and workload.matches(svc.selector)
            ):
                out.append(svc)
        return out


def _endpoint(svc: Service, sp: ServicePort, w: Workload) -> Endpoint:
    if sp.name and sp.name in w.endpoint_ports:
        target = w.endpoint_ports[sp.name]
    else:
        target = sp.target_number(w.named_ports)
    return Endpoint(
        address=w.address,
        port=w.dial_port(target),
        target_port=target,
        service_port=sp.port,
        labels=w.labels,
        namespace=w.namespace,
        service_account=w.service_account,
        healthy=w.healthy,
        locality=w.locality,
        weight=w.weight,
        workload_uid=w.uid,
        has_sidecar=w.has_sidecar,
        workload_name=w.workload_name or w.name,
    )


#: ``(hostname, port) -> (service, member workloads, endpoints)`` of a previous
#: :func:`build_endpoints`, to hand back the same endpoint tuples for unchanged services.
EndpointMemo = dict[tuple[str, int], tuple[Service, tuple[Workload, ...], tuple[Endpoint, ...]]]


def build_endpoints(
    services: Mapping[str, Service],
    workloads: Iterable[Workload],
    entry_workloads: Mapping[str, list[Workload]],
    memo: EndpointMemo | None = None,
) -> dict[tuple[str, int], tuple[Endpoint, ...]]:
    """Endpoints of every service: selected workloads, entry endpoints, DNS hosts.

    With ``memo`` (filled by the previous call), a service whose definition and member
    workloads are the same objects as then gets the same endpoint tuple back: what depends
    on it (clusters carried across push contexts) sees it unchanged by identity, and a
    snapshot after one sidecar connected builds the endpoints of that sidecar's services
    only."""
    previous = dict(memo) if memo is not None else {}
    if memo is not None:
        memo.clear()
    # Workloads by namespace and by (namespace, label, value): a selector is matched against
    # the workloads carrying its first label only, not every workload of the namespace.
    by_label: dict[tuple[str, str, str], list[Workload]] = {}
    for w in workloads:
        for k, v in w.labels.items():
            by_label.setdefault((w.namespace, k, v), []).append(w)
    out: dict[tuple[str, int], tuple[Endpoint, ...]] = {}
    for svc in services.values():
        members: list[Workload] = []
        if svc.source_kind == "ServiceEntry":
            members.extend(entry_workloads.get(f"{svc.namespace}/{svc.source_name}", []))
        if svc.selector:
            first, value = next(iter(svc.selector.items()))
            candidates = by_label.get((svc.namespace, first, value), [])
            members.extend(w for w in candidates if w.matches(svc.selector))
        members.sort(key=lambda w: (w.address, w.uid))
        members_t = tuple(members)
        for sp in svc.ports:
            key = (svc.hostname, sp.port)
            known = previous.get(key)
            if (
                known is not None
                and known[0] is svc
                and len(known[1]) == len(members_t)
                and all(a is b for a, b in zip(known[1], members_t, strict=True))
            ):
                out[key] = known[2]
                if memo is not None:
                    memo[key] = known
                continue
            eps = [_endpoint(svc, sp, w) for w in members]
            if (
                not eps
                and svc.source_kind == "ServiceEntry"
                and svc.resolution in ("DNS", "DNS_ROUND_ROBIN")
                and not svc.is_wildcard
            ):
                port = sp.target_port if isinstance(sp.target_port, int) else sp.port
                eps = [
                    Endpoint(
                        address=svc.hostname,
                        port=port,
                        target_port=port,
                        service_port=sp.port,
                        labels={},
                        namespace=svc.namespace,
                        service_account="default",
                    )
                ]
            out[key] = tuple(eps)
            if memo is not None:
                memo[key] = (svc, members_t, out[key])
    return out


class Registry:
    """Combines the sources into snapshots. Keep one per control plane (it holds the VIPs)."""

    def __init__(
        self,
        vips: VipAllocator | None = None,
        sidecars: ConnectedSidecars | None = None,
        settings: RegistrySettings | None = None,
    ) -> None:
        self.vips = vips or VipAllocator()
        self.sidecars = sidecars or ConnectedSidecars()
        self.settings = settings or RegistrySettings()
        self._cache: dict[tuple[Any, int], Any] = {}
        self._hostnames: set[str] = set()
        #: Connected sidecars that have been seen with their Pod object.
        self._pod_backed: set[str] = set()
        #: The last snapshot's endpoints, reused for services whose members are the same.
        self._endpoints: EndpointMemo = {}
        #: Sidecars merged with their Pod: (sidecar, pod) -> merged, while both stay the same.
        self._merged: dict[str, tuple[Workload, Workload, Workload]] = {}

    def detached(self) -> Registry:
        """A registry for a preview: the same connected sidecars and conversions, a copy of the
        VIPs, so snapshots of hypothetical objects change nothing here."""
        other = Registry(self.vips.copy(), self.sidecars, self.settings)
        other._cache = dict(self._cache)
        other._endpoints = dict(self._endpoints)
        other._hostnames = set(self._hostnames)
        return other

    def _convert(self, obj: StoredObject) -> Any:
        key = (obj.key, obj.revision)
        found = self._cache.get(key)
        if found is not None:
            return found
        if obj.kind == "Service":
            spec = obj.body.get("spec") or {}
            ip = spec.get("clusterIP")
            hostname = service_fqdn(obj.name, obj.namespace, self.settings.domain_suffix)
            if ip and ip != "None":
                self.vips.reserve(hostname, str(ip))
            value: Any = service_from_k8s(obj.body, self.vips.allocate, self.settings.domain_suffix)
        elif obj.kind == "ServiceEntry":
            for host, ip in status_addresses(obj.body).items():
                self.vips.reserve(host, ip)
            value = (
                services_from_service_entry(obj.body, self.vips.allocate),
                workloads_from_service_entry(obj.body),
            )
        elif obj.kind == "Pod":
            value = (workload_from_pod(obj.body),)
        else:
            value = (workload_from_workload_entry(obj.body),)
        self._cache[key] = value
        return value

    def snapshot(self, objects: Iterable[StoredObject]) -> RegistrySnapshot:
        """A snapshot from the stored objects of one revision (other kinds are ignored)."""
        services: dict[str, Service] = {}
        entries: list[tuple[int, str, str, list[Service]]] = []
        entry_workloads: dict[str, list[Workload]] = {}
        workloads: dict[str, Workload] = {}
        seen: set[tuple[Any, int]] = set()
        for obj in objects:
            if obj.kind not in REGISTRY_KINDS:
                continue
            seen.add((obj.key, obj.revision))
            value = self._convert(obj)
            if obj.kind == "Service":
                services[value.hostname] = value
            elif obj.kind == "ServiceEntry":
                entries.append((obj.revision, obj.namespace, obj.name, value[0]))
                entry_workloads[f"{obj.namespace}/{obj.name}"] = value[1]
            elif value[0] is not None:
                workloads[value[0].uid] = value[0]
        for _, _, _, svcs in sorted(entries, key=lambda e: e[:3]):
            for svc in svcs:
                services.setdefault(svc.hostname, svc)
        connected: set[str] = set()
        for w in self.sidecars.workloads():
            connected.add(w.uid)
            pod_uid = f"Pod/{w.namespace}/{w.name}"
            pod = workloads.pop(pod_uid, None)
            if pod is None:
                # A workload that registered into a WorkloadGroup: its entry has its name.
                pod = workloads.pop(f"WorkloadEntry/{w.namespace}/{w.name}", None)
            if pod is not None:
                known = self._merged.get(w.uid)
                if known is not None and known[0] is w and known[1] is pod:
                    w = known[2]
                else:
                    merged = _merge_pod(w, pod)
                    self._merged[w.uid] = (w, pod, merged)
                    w = merged
                self._pod_backed.add(w.uid)
            elif w.uid in self._pod_backed:
                # Its Pod was deleted: the pod is terminating (its apps stop once every proxy
                # has this), so it takes no new requests, as Kubernetes' terminating endpoints.
                w = replace(w, healthy=False)
            workloads[w.uid] = w
        self._pod_backed &= connected
        self._merged = {k: v for k, v in self._merged.items() if k in self._pod_backed}
        # Forget conversions of objects that are gone; release VIPs of vanished hostnames.
        self._cache = {k: v for k, v in self._cache.items() if k in seen}
        gone = self._hostnames - set(services)
        for host in gone:
            self.vips.release(host)
        self._hostnames = set(services)
        endpoints = build_endpoints(services, workloads.values(), entry_workloads, self._endpoints)
        return RegistrySnapshot(
            services=MappingProxyType(services),
            endpoints=MappingProxyType(endpoints),
            workloads=MappingProxyType(workloads),
        )


def _merge_pod(sidecar: Workload, pod: Workload) -> Workload:
    """A connected sidecar of a known pod: the sidecar's ports, the pod's names and health."""
    return replace(
        sidecar,
        labels={**pod.labels, **sidecar.labels},
        named_ports=pod.named_ports,
        healthy=pod.healthy,
        locality=pod.locality or sidecar.locality,
        # A WorkloadEntry's (auto-registered from a WorkloadGroup's template).
        endpoint_ports=pod.endpoint_ports,
        network=pod.network or sidecar.network,
        weight=pod.weight or sidecar.weight,
    )


def changed_services(old: RegistrySnapshot | None, new: RegistrySnapshot) -> set[str]:
    """Hostnames whose service definition or endpoints differ between two snapshots."""
    if old is None:
        return set(new.services)
    changed = {
        h
        for h in set(old.services) | set(new.services)
        if old.services.get(h) != new.services.get(h)
    }
    for key in set(old.endpoints) | set(new.endpoints):
        if old.endpoints.get(key) != new.endpoints.get(key):
            changed.add(key[0])
    return changed
