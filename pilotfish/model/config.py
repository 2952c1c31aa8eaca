"""Config as the model indexes it: VirtualServices, DestinationRules, Gateways and the security
policies (PeerAuthentication, AuthorizationPolicy, RequestAuthentication).

Each entry holds the spec parsed into its typed model of :mod:`pilotfish.api` (Istio's field
names: ``vs.http[0].route[0].destination.host``, durations with their value in seconds) and
adds what every consumer needs resolved once: hosts resolved to FQDNs in the object's
namespace, gateway references normalized to ``mesh`` / ``ns/name``, exportTo. Entries are
immutable and keyed by ``(key, revision)``: a stored object is parsed once, and a new
PushContext reuses the entries whose object did not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pilotfish.api.destinationrule import DestinationRuleSpec, Subset, TrafficPolicy
from pilotfish.api.hosts import MESH_GATEWAY, normalize_gateway, resolve_host
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, export_to
from pilotfish.api.networking import GatewaySpec, Server
from pilotfish.api.objects import Spec
from pilotfish.api.security import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
)
from pilotfish.api.virtualservice import (
    HTTPMatchRequest,
    HTTPRoute,
    L4MatchAttributes,
    TCPRoute,
    TLSMatchAttributes,
    TLSRoute,
    VirtualServiceSpec,
)
from pilotfish.config.store.base import Key, StoredObject


@dataclass(frozen=True)
class VirtualServiceConfig:
    key: Key
    revision: int
    hosts: tuple[str, ...]  # resolved
    gateways: tuple[str, ...]  # normalized; ("mesh",) when none given
    http: tuple[HTTPRoute, ...]
    tcp: tuple[TCPRoute, ...]
    tls: tuple[TLSRoute, ...]
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

    def match_gateways(
        self, match: HTTPMatchRequest | TLSMatchAttributes | L4MatchAttributes
    ) -> tuple[str, ...]:
        """The gateways a match applies to: its own ``gateways`` or the VirtualService's."""
        own = match.gateways
        if own:
            return tuple(normalize_gateway(str(g), self.namespace) for g in own)
        return self.gateways

    def referenced_gateways(self) -> frozenset[str]:
        """Every gateway this VirtualService names (``mesh`` or ``ns/name``): its own
        ``gateways`` and those of its HTTP, TCP and TLS matches."""
        refs = set(self.gateways)
        matches: list[HTTPMatchRequest | TLSMatchAttributes | L4MatchAttributes] = []
        for http in self.http:
            matches += http.match
        for tcp in self.tcp:
            matches += tcp.match
        for tls in self.tls:
            matches += tls.match
        for m in matches:
            refs.update(self.match_gateways(m))
        return frozenset(refs)


@dataclass(frozen=True)
class DestinationRuleConfig:
    key: Key
    revision: int
    host: str  # resolved
    traffic_policy: TrafficPolicy | None
    subsets: tuple[Subset, ...]
    export_to: tuple[str, ...]
    workload_selector: dict[str, str] | None
    creation: str = ""

    @property
    def namespace(self) -> str:
        return self.key.namespace

    def subset(self, name: str) -> Subset | None:
        for s in self.subsets:
            if s.name == name:
                return s
        return None


@dataclass(frozen=True)
class GatewayConfig:
    key: Key
    revision: int
    selector: dict[str, str]
    servers: tuple[Server, ...]

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def ref(self) -> str:
        return f"{self.key.namespace}/{self.key.name}"


PolicySpec = TypeVar(
    "PolicySpec", PeerAuthenticationSpec, AuthorizationPolicySpec, RequestAuthenticationSpec
)


@dataclass(frozen=True)
class PolicyConfig(Generic[PolicySpec]):
    """A PeerAuthentication, AuthorizationPolicy or RequestAuthentication with its typed spec."""

    key: Key
    revision: int
    spec: PolicySpec
    creation: str = ""
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def name(self) -> str:
        return self.key.name


ParsedConfig = (
    VirtualServiceConfig
    | DestinationRuleConfig
    | GatewayConfig
    | PolicyConfig[PeerAuthenticationSpec]
    | PolicyConfig[AuthorizationPolicySpec]
    | PolicyConfig[RequestAuthenticationSpec]
)
POLICY_KINDS = ("PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication")
PARSED_KINDS = frozenset({"VirtualService", "DestinationRule", "Gateway", *POLICY_KINDS})


def _creation(obj: StoredObject) -> str:
    return str((obj.body.get("metadata") or {}).get("creationTimestamp") or "")


def _annotations(obj: StoredObject) -> dict[str, str]:
    return {
        str(k): str(v)
        for k, v in ((obj.body.get("metadata") or {}).get("annotations") or {}).items()
    }


def parse(obj: StoredObject, domain_suffix: str = DEFAULT_DOMAIN_SUFFIX) -> ParsedConfig:
    """One stored object of a kind in ``PARSED_KINDS`` as an indexed entry.

    Raises ``pydantic.ValidationError`` when the spec does not fit its model (objects are
    validated before they are stored, so only a store written by another version can hold one).
    """
    spec: Spec = obj.body.get("spec") or {}
    ns = obj.namespace
    if obj.kind == "VirtualService":
        vs = VirtualServiceSpec.model_validate(spec)
        gateways = tuple(normalize_gateway(g, ns) for g in vs.gateways)
        return VirtualServiceConfig(
            key=obj.key,
            revision=obj.revision,
            hosts=tuple(resolve_host(h, ns, domain_suffix) for h in vs.hosts),
            gateways=gateways or (MESH_GATEWAY,),
            http=tuple(vs.http),
            tcp=tuple(vs.tcp),
            tls=tuple(vs.tls),
            export_to=export_to(vs.exportTo),
            creation=_creation(obj),
        )
    if obj.kind == "DestinationRule":
        dr = DestinationRuleSpec.model_validate(spec)
        selector = dr.workloadSelector.matchLabels if dr.workloadSelector else None
        return DestinationRuleConfig(
            key=obj.key,
            revision=obj.revision,
            host=resolve_host(dr.host, ns, domain_suffix),
            traffic_policy=dr.trafficPolicy,
            subsets=tuple(dr.subsets),
            export_to=export_to(dr.exportTo),
            workload_selector=dict(selector) if selector else None,
            creation=_creation(obj),
        )
    if obj.kind == "Gateway":
        gw = GatewaySpec.model_validate(spec)
        return GatewayConfig(
            key=obj.key,
            revision=obj.revision,
            selector=dict(gw.selector),
            servers=tuple(gw.servers),
        )
    if obj.kind == "PeerAuthentication":
        return PolicyConfig(
            obj.key,
            obj.revision,
            PeerAuthenticationSpec.model_validate(spec),
            _creation(obj),
            _annotations(obj),
        )
    if obj.kind == "AuthorizationPolicy":
        return PolicyConfig(
            obj.key,
            obj.revision,
            AuthorizationPolicySpec.model_validate(spec),
            _creation(obj),
            _annotations(obj),
        )
    if obj.kind == "RequestAuthentication":
        return PolicyConfig(
            obj.key,
            obj.revision,
            RequestAuthenticationSpec.model_validate(spec),
            _creation(obj),
            _annotations(obj),
        )
    raise ValueError(f"{obj.key}: not one of {', '.join(sorted(PARSED_KINDS))}")
