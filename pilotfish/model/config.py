"""Networking config as the model indexes it: VirtualServices, DestinationRules, Gateways.

Each entry keeps the validated spec as written (Istio's camelCase field names:
``spec["http"][0]["route"][0]["destination"]["host"]``) and adds what every consumer needs
resolved once: hosts resolved to FQDNs in the object's namespace, gateway references
normalized to ``mesh`` / ``ns/name``, exportTo. Entries are immutable and keyed by
``(key, revision)`` so that a new PushContext reuses those whose object did not change.
"""

from __future__ import annotations

from dataclasses import dataclass

from pilotfish.api.hosts import MESH_GATEWAY, normalize_gateway, resolve_host
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, export_to
from pilotfish.api.objects import Spec
from pilotfish.config.store.base import Key, StoredObject


@dataclass(frozen=True)
class VirtualServiceConfig:
    key: Key
    revision: int
    hosts: tuple[str, ...]  # resolved
    gateways: tuple[str, ...]  # normalized; ("mesh",) when none given
    http: tuple[Spec, ...]
    tcp: tuple[Spec, ...]
    tls: tuple[Spec, ...]
    export_to: tuple[str, ...]
    creation: str = ""

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name

    def resolve(self, host: str, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> str:
        """A destination host of this VirtualService, resolved in its namespace."""
        return resolve_host(host, self.namespace, domain_suffix)

    def match_gateways(self, match: Spec) -> tuple[str, ...]:
        """The gateways a match applies to: its own ``gateways`` or the VirtualService's."""
        own = match.get("gateways")
        if own:
            return tuple(normalize_gateway(str(g), self.namespace) for g in own)
        return self.gateways


@dataclass(frozen=True)
class DestinationRuleConfig:
    key: Key
    revision: int
    host: str  # resolved
    traffic_policy: Spec
    subsets: tuple[Spec, ...]
    export_to: tuple[str, ...]
    workload_selector: dict[str, str] | None
    creation: str = ""

    @property
    def namespace(self) -> str:
        return self.key.namespace

    def subset(self, name: str) -> Spec | None:
        for s in self.subsets:
            if s.get("name") == name:
                return s
        return None


@dataclass(frozen=True)
class GatewayConfig:
    key: Key
    revision: int
    selector: dict[str, str]
    servers: tuple[Spec, ...]

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def ref(self) -> str:
        return f"{self.key.namespace}/{self.key.name}"


ParsedConfig = VirtualServiceConfig | DestinationRuleConfig | GatewayConfig
PARSED_KINDS = frozenset({"VirtualService", "DestinationRule", "Gateway"})


def _creation(obj: StoredObject) -> str:
    return str((obj.body.get("metadata") or {}).get("creationTimestamp") or "")


def parse(obj: StoredObject, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> ParsedConfig:
    """One stored VirtualService, DestinationRule or Gateway as an indexed entry."""
    spec: Spec = obj.body.get("spec") or {}
    ns = obj.namespace
    if obj.kind == "VirtualService":
        gateways = tuple(normalize_gateway(str(g), ns) for g in spec.get("gateways") or [])
        return VirtualServiceConfig(
            key=obj.key,
            revision=obj.revision,
            hosts=tuple(resolve_host(str(h), ns, domain_suffix) for h in spec.get("hosts") or []),
            gateways=gateways or (MESH_GATEWAY,),
            http=tuple(spec.get("http") or ()),
            tcp=tuple(spec.get("tcp") or ()),
            tls=tuple(spec.get("tls") or ()),
            export_to=export_to(spec.get("exportTo")),
            creation=_creation(obj),
        )
    if obj.kind == "DestinationRule":
        selector = (spec.get("workloadSelector") or {}).get("matchLabels")
        return DestinationRuleConfig(
            key=obj.key,
            revision=obj.revision,
            host=resolve_host(str(spec.get("host") or ""), ns, domain_suffix),
            traffic_policy=spec.get("trafficPolicy") or {},
            subsets=tuple(spec.get("subsets") or ()),
            export_to=export_to(spec.get("exportTo")),
            workload_selector=dict(selector) if selector else None,
            creation=_creation(obj),
        )
    if obj.kind == "Gateway":
        return GatewayConfig(
            key=obj.key,
            revision=obj.revision,
            selector={str(k): str(v) for k, v in (spec.get("selector") or {}).items()},
            servers=tuple(spec.get("servers") or ()),
        )
    raise ValueError(f"{obj.key}: not a VirtualService, DestinationRule or Gateway")
