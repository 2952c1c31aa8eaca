"""PushContext: one immutable, indexed view of config + registry at one store revision.

Built by ``PushContext.build(objects, registry_snapshot, revision, previous=...)`` from the
stored objects of one revision and a registry snapshot. VirtualServices, DestinationRules,
Gateways and the security policies are parsed into their typed models (``pilotfish.api``) once
per ``(key, revision)``: the entries of objects that did not change are taken from
``previous``. An object whose spec does not fit its model is left out (with a warning).
Indexes:

- services by hostname and by namespace (with exportTo visibility per client namespace);
- VirtualServices in Istio's order (creation time, then namespace/name), by gateway
  (``mesh`` or ``ns/name``, including gateways named only in ``http[].match[].gateways``),
  with delegates merged into their roots (:mod:`pilotfish.model.delegate`): a delegate (no
  ``hosts``) is not listed itself, and ``config(key)`` of a root is its merged entry;
- DestinationRules by namespace and exact host (wildcard hosts apart), resolved as Istio does:
  the client's namespace first, then the service's namespace, then the root namespace
  (``istio-system``), most specific host first;
- Gateways; the security policies (PeerAuthentication, AuthorizationPolicy,
  RequestAuthentication), typed, in store order, for their own translators; other kinds
  (Secrets, Sidecars...) are kept as stored objects.

Translation never reads Secrets: ``credentials`` tells it whether a ``credentialName`` secret
can be served to a proxy, answered by the xDS secrets generator the control plane injects
(``pilotfish.xds.secrets``), which reads them. Without one, no credential is available.

``memo(key, factory)`` caches work that does not depend on the proxy (clusters per namespace,
route configs per namespace and port...) for the life of this context: translators share it
across every proxy pushed at this revision.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import pydantic

from pilotfish.api.hosts import MESH_GATEWAY, host_matches, specificity
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, visible
from pilotfish.api.meshconfig import MeshConfig, mesh_config_from_bodies
from pilotfish.api.node import NodeInfo
from pilotfish.api.security import (
    AuthorizationPolicySpec,
    PeerAuthenticationSpec,
    RequestAuthenticationSpec,
)
from pilotfish.api.telemetry import Telemetry
from pilotfish.config.store.base import Key, StoredObject
from pilotfish.model.config import (
    PARSED_KINDS,
    POLICY_KINDS,
    DestinationRuleConfig,
    GatewayConfig,
    ParsedConfig,
    PolicyConfig,
    VirtualServiceConfig,
    parse,
)
from pilotfish.model.delegate import merge_delegates
from pilotfish.model.telemetry import ScopedTelemetry
from pilotfish.registry.registry import RegistrySnapshot
from pilotfish.registry.types import Endpoint, Service

T = TypeVar("T")
#: Kinds that change workloads and endpoints only (see ``PushContext.config_epoch``).
_WORKLOAD_KINDS = frozenset({"Pod", "WorkloadEntry"})
#: Kinds left out of ``PushContext.route_epoch`` besides workloads: what route configurations
#: read of DestinationRules is named by ``translate.dependencies.route_rule_revisions``.
_ROUTE_IGNORED_KINDS = _WORKLOAD_KINDS | {"DestinationRule"}
#: At most this many reusable values are carried from one context to the next.
_MAX_INHERITED = 200_000
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MeshSettings:
    """Mesh-wide settings (Istio's MeshConfig subset that translation needs)."""

    root_namespace: str = "istio-system"
    domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
    #: ``ALLOW_ANY`` (Istio's default) or ``REGISTRY_ONLY``.
    outbound_traffic_policy: str = "ALLOW_ANY"
    #: Istio's default connectTimeout.
    connect_timeout_seconds: float = 10.0


def with_mesh_config(settings: MeshSettings, operators: Iterable[StoredObject]) -> MeshSettings:
    """``settings`` with what the stored mesh config (IstioOperators) sets explicitly:
    ``rootNamespace`` and ``outboundTrafficPolicy.mode``."""
    bodies = [o.body for o in operators]
    if not bodies:
        return settings
    try:
        mesh = mesh_config_from_bodies(bodies)
    except pydantic.ValidationError as exc:
        log.warning("mesh config ignored: %s", exc)
        return settings
    changes: dict[str, str] = {}
    if "rootNamespace" in mesh.model_fields_set:
        changes["root_namespace"] = mesh.rootNamespace
    if "outboundTrafficPolicy" in mesh.model_fields_set:
        changes["outbound_traffic_policy"] = mesh.outboundTrafficPolicy.mode
    return dataclasses.replace(settings, **changes) if changes else settings  # type: ignore[arg-type]


#: The JSON Web Key Set of a RequestAuthentication ``jwksUri``, as the control plane last
#: fetched it, or None when it is not known (yet).
JwksLookup = Callable[[str], "str | None"]


def no_jwks(uri: str) -> str | None:
    return None


class Credentials(Protocol):
    """Whether a ``kubernetes://`` credential can be served to a proxy: its Secret is one the
    proxy may read and it holds what the name asks for. Translation leaves out what names an
    unavailable credential (a gateway server), and never sees the key material."""

    def available(self, node: NodeInfo, resource: str) -> bool: ...


#: Makes the :class:`Credentials` of one context (called once per context, on first use).
CredentialsFactory = Callable[["PushContext"], Credentials]


class _NoCredentials:
    def available(self, node: NodeInfo, resource: str) -> bool:
        return False


def no_credentials(push: PushContext) -> Credentials:
    return _NoCredentials()


class PushContext:
    """Read-only after ``build``; safe to share across threads."""

    def __init__(
        self,
        revision: int,
        registry: RegistrySnapshot,
        parsed: Mapping[tuple[Key, int], ParsedConfig],
        others: Mapping[str, tuple[StoredObject, ...]],
        settings: MeshSettings,
        jwks: JwksLookup = no_jwks,
        credentials: CredentialsFactory = no_credentials,
    ) -> None:
        self.revision = revision
        self.registry = registry
        #: The settings the control plane was started with, before the mesh config.
        self.base_settings = settings
        self.settings = with_mesh_config(settings, others.get("IstioOperator", ()))
        #: Keys of remote JWKS (``jwksUri``), fetched by the control plane and inlined.
        self.jwks = jwks
        self.credentials_factory = credentials
        self._parsed = parsed
        self._others = others
        self._by_key: dict[Key, ParsedConfig | StoredObject] = {
            k: v for (k, _), v in parsed.items()
        }
        for objs in others.values():
            for o in objs:
                self._by_key[o.key] = o
        self._memo: dict[Hashable, Any] = {}
        #: The previous context's memo: values :meth:`reuse` may take over.
        self._inherited: Mapping[Hashable, Any] = {}
        #: Changes when anything but workloads and endpoints changes from one context to the
        #: next: what depends on config and service definitions only (route configurations)
        #: is reused across contexts of one epoch (``reuse(key, push.config_epoch, ...)``).
        self.config_epoch = 0
        #: As ``config_epoch``, but DestinationRule changes do not move it either: route
        #: configurations read DestinationRules only for consistent-hash policies, so their
        #: reuse adds the revisions of the rules that can matter to the inputs
        #: (``translate.dependencies.route_rule_revisions``).
        self.route_epoch = 0
        #: Changes when the registry's service definitions change (not their endpoints):
        #: which services select a workload is reused across contexts of one epoch.
        self.services_epoch = 0
        self._lock = threading.Lock()

        def order(c: VirtualServiceConfig | DestinationRuleConfig) -> tuple[str, str, str]:
            return (c.creation, c.key.namespace, c.key.name)

        vss = sorted((p for p in parsed.values() if isinstance(p, VirtualServiceConfig)), key=order)
        # Delegates apply only through their roots: roots carry the merged rules.
        merged = merge_delegates(vss, settings.domain_suffix)
        vss = list(merged.virtual_services)
        self.delegation = merged
        for vs in vss:
            if vs.key in merged.delegates_by_root:
                self._by_key[vs.key] = vs
        drs = sorted(
            (p for p in parsed.values() if isinstance(p, DestinationRuleConfig)), key=order
        )
        self.virtual_services: tuple[VirtualServiceConfig, ...] = tuple(vss)
        self.destination_rules: tuple[DestinationRuleConfig, ...] = tuple(drs)
        self.gateways: tuple[GatewayConfig, ...] = tuple(
            sorted(
                (p for p in parsed.values() if isinstance(p, GatewayConfig)),
                key=lambda g: (g.key.namespace, g.key.name),
            )
        )
        by_gw: dict[str, list[VirtualServiceConfig]] = {}
        for vs in vss:
            refs = set(vs.gateways)
            for rule in vs.http:
                for m in rule.match:
                    refs.update(vs.match_gateways(m))
            for ref in refs:
                by_gw.setdefault(ref, []).append(vs)
        self._vs_by_gateway = {k: tuple(v) for k, v in by_gw.items()}
        policies = [p for p in parsed.values() if isinstance(p, PolicyConfig)]
        self.peer_authentications: tuple[PolicyConfig[PeerAuthenticationSpec], ...] = tuple(
            p for p in policies if isinstance(p.spec, PeerAuthenticationSpec)
        )
        self.authorization_policies: tuple[PolicyConfig[AuthorizationPolicySpec], ...] = tuple(
            p for p in policies if isinstance(p.spec, AuthorizationPolicySpec)
        )
        self.request_authentications: tuple[PolicyConfig[RequestAuthenticationSpec], ...] = tuple(
            p for p in policies if isinstance(p.spec, RequestAuthenticationSpec)
        )
        # Per namespace, in Istio's order: rules by exact host, and the wildcard rules.
        dr_exact: dict[str, dict[str, list[DestinationRuleConfig]]] = {}
        dr_wild: dict[str, list[DestinationRuleConfig]] = {}
        for dr in drs:
            if dr.host.startswith("*"):
                dr_wild.setdefault(dr.namespace, []).append(dr)
            else:
                dr_exact.setdefault(dr.namespace, {}).setdefault(dr.host, []).append(dr)
        self._dr_exact = {
            ns: {h: tuple(v) for h, v in by_host.items()} for ns, by_host in dr_exact.items()
        }
        self._dr_wild = {ns: tuple(v) for ns, v in dr_wild.items()}
        svc_by_ns: dict[str, list[Service]] = {}
        for svc in sorted(registry.services.values(), key=lambda s: s.hostname):
            svc_by_ns.setdefault(svc.namespace, []).append(svc)
        self._svc_by_ns = {k: tuple(v) for k, v in svc_by_ns.items()}

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        objects: Iterable[StoredObject],
        registry: RegistrySnapshot,
        revision: int | None = None,
        previous: PushContext | None = None,
        settings: MeshSettings | None = None,
        jwks: JwksLookup | None = None,
        credentials: CredentialsFactory | None = None,
    ) -> PushContext:
        """A context from the objects of one revision; reuses ``previous``'s parsed entries."""
        settings = settings or (previous.base_settings if previous else MeshSettings())
        jwks = jwks or (previous.jwks if previous else no_jwks)
        credentials = credentials or (previous.credentials_factory if previous else no_credentials)
        old = previous._parsed if previous else {}
        parsed: dict[tuple[Key, int], ParsedConfig] = {}
        others: dict[str, list[StoredObject]] = {}
        top = 0
        for obj in objects:
            top = max(top, obj.revision)
            if obj.kind in PARSED_KINDS:
                k = (obj.key, obj.revision)
                entry = old.get(k)
                if entry is None:
                    try:
                        entry = parse(obj, settings.domain_suffix)
                    except pydantic.ValidationError as exc:
                        log.warning("%s ignored: %s", obj.key, exc)
                        continue
                parsed[k] = entry
            else:
                others.setdefault(obj.kind, []).append(obj)
        context = cls(
            revision if revision is not None else top,
            registry,
            MappingProxyType(parsed),
            MappingProxyType({k: tuple(v) for k, v in others.items()}),
            settings,
            jwks,
            credentials,
        )
        if previous is not None and previous.settings == settings:
            context._inherited = previous._reusable()
            same_services = context.registry.services == previous.registry.services
            context.services_epoch = previous.services_epoch + (0 if same_services else 1)
            if context._same_config(previous):
                context.config_epoch = previous.config_epoch
                context.route_epoch = previous.route_epoch
            else:
                context.config_epoch = previous.config_epoch + 1
                same = context._same_config(previous, _ROUTE_IGNORED_KINDS)
                context.route_epoch = previous.route_epoch + (0 if same else 1)
        return context

    def _same_config(
        self, previous: PushContext, ignored: frozenset[str] = _WORKLOAD_KINDS
    ) -> bool:
        """Only workloads (Pods, WorkloadEntries, connected sidecars) and therefore endpoints
        differ from ``previous`` (and objects of the other ``ignored`` kinds): config objects
        and service definitions are the same."""
        if self.services_epoch != previous.services_epoch:
            return False
        mine = {k: v.revision for k, v in self._by_key.items() if k.kind not in ignored}
        theirs = {k: v.revision for k, v in previous._by_key.items() if k.kind not in ignored}
        return mine == theirs

    def _reusable(self) -> dict[Hashable, Any]:
        """What the next context may take over: this context's :meth:`reuse` values and those
        it inherited and did not need (a push that regenerated routes only keeps the clusters
        of the context before). Bounded: past the limit only this context's own are kept."""
        with self._lock:
            own: dict[Hashable, Any] = {
                k: v for k, v in self._memo.items() if type(k) is tuple and k[0] == "reuse"
            }
        if len(self._inherited) + len(own) > _MAX_INHERITED:
            return own
        return {**self._inherited, **own}

    # ---- what this context holds --------------------------------------------------------

    def config(self, key: Key) -> ParsedConfig | StoredObject | None:
        """The object at ``key`` in this context: its parsed entry for the kinds the model
        parses, else the stored object (None when absent)."""
        return self._by_key.get(key)

    def config_revisions(self) -> dict[Key, int]:
        """The revision of every object of this context, by key."""
        return {k: v.revision for k, v in self._by_key.items()}

    # ---- shared work ----------------------------------------------------------------------

    def memo(self, key: Hashable, factory: Callable[[], T]) -> T:
        """``factory()`` once per key for the life of this context (thread-safe)."""
        with self._lock:
            if key in self._memo:
                return self._memo[key]
        value = factory()
        with self._lock:
            return self._memo.setdefault(key, value)

    def reuse(self, key: Hashable, inputs: object, factory: Callable[[], T]) -> T:
        """:meth:`memo`, also across contexts: when the previous context computed ``key`` from
        inputs equal to ``inputs`` (everything the value depends on besides the key), its
        value is taken over instead of computed again. A push after one change rebuilds only
        what that change touched."""

        def compute() -> tuple[object, T]:
            old = self._inherited.get(("reuse", key))
            if old is not None and old[0] == inputs:
                return old
            return inputs, factory()

        return self.memo(("reuse", key), compute)[1]

    @property
    def credentials(self) -> Credentials:
        """Which ``credentialName`` secrets can be served, at this revision."""
        return self.memo(("credentials",), lambda: self.credentials_factory(self))

    # ---- services -------------------------------------------------------------------------

    def service(self, hostname: str) -> Service | None:
        return self.registry.services.get(hostname)

    def services_in(self, namespace: str) -> tuple[Service, ...]:
        return self._svc_by_ns.get(namespace, ())

    def services_selecting(self, namespace: str, labels: Mapping[str, str]) -> tuple[Service, ...]:
        """Services of ``namespace`` whose selector picks a workload with ``labels``, ordered
        by hostname (looked up by label, not by scanning the namespace)."""

        def index() -> dict[tuple[str, str], list[Service]]:
            out: dict[tuple[str, str], list[Service]] = {}
            for svc in self.services_in(namespace):
                if svc.selector:
                    first = next(iter(svc.selector.items()))
                    out.setdefault(first, []).append(svc)
            return out

        by_label = self.memo(("services_by_label", namespace), index)
        found = {
            svc.hostname: svc
            for item in labels.items()
            for svc in by_label.get(item, ())
            if all(labels.get(k) == v for k, v in (svc.selector or {}).items())
        }
        return tuple(found[h] for h in sorted(found))

    def visible_services(self, namespace: str) -> tuple[Service, ...]:
        """Services a proxy of ``namespace`` can reach (exportTo), ordered by hostname."""

        def compute() -> tuple[Service, ...]:
            return tuple(
                s
                for s in sorted(self.registry.services.values(), key=lambda s: s.hostname)
                if s.visible_from(namespace)
            )

        return self.memo(("visible_services", namespace), compute)

    def endpoints(self, hostname: str, port: int) -> tuple[Endpoint, ...]:
        return self.registry.endpoints_of(hostname, port)

    # ---- virtual services -----------------------------------------------------------------

    def virtual_services_for_gateway(
        self, gateway: str, namespace: str | None = None
    ) -> tuple[VirtualServiceConfig, ...]:
        """VirtualServices bound to ``gateway`` (``mesh`` or ``ns/name``), visible from
        ``namespace`` when given."""
        found = self._vs_by_gateway.get(gateway, ())
        if namespace is None:
            return found
        return tuple(v for v in found if visible(v.export_to, v.namespace, namespace))

    def mesh_virtual_service(self, hostname: str, namespace: str) -> VirtualServiceConfig | None:
        """The VirtualService a sidecar of ``namespace`` applies to ``hostname``: the first one
        naming the host exactly, else the one with the most specific matching wildcard."""
        exact, wild = self.memo(("mesh_vs_index", namespace), lambda: self._mesh_index(namespace))
        found = exact.get(hostname)
        if found is not None:
            return found
        for pattern, vs in wild:
            if host_matches(pattern, hostname):
                return vs
        return None

    def _mesh_index(
        self, namespace: str
    ) -> tuple[dict[str, VirtualServiceConfig], list[tuple[str, VirtualServiceConfig]]]:
        exact: dict[str, VirtualServiceConfig] = {}
        wild: list[tuple[str, VirtualServiceConfig]] = []
        for vs in self.virtual_services_for_gateway(MESH_GATEWAY, namespace):
            for h in vs.hosts:
                if h.startswith("*"):
                    wild.append((h, vs))
                else:
                    exact.setdefault(h, vs)
        # Most specific wildcard first; stable, so the oldest VirtualService wins a tie.
        wild.sort(key=lambda e: specificity(e[0]))
        return exact, wild

    # ---- destination rules ----------------------------------------------------------------

    def destination_rule(self, namespace: str, hostname: str) -> DestinationRuleConfig | None:
        """Istio's lookup: the client's namespace, the service's namespace, the root namespace."""
        cache: dict[str, DestinationRuleConfig | None] = self.memo(("dr", namespace), dict)
        if hostname not in cache:
            cache[hostname] = self._find_destination_rule(namespace, hostname)
        return cache[hostname]

    def _find_destination_rule(self, namespace: str, hostname: str) -> DestinationRuleConfig | None:
        svc = self.service(hostname)
        order = [namespace]
        if svc is not None and svc.namespace not in order:
            order.append(svc.namespace)
        if self.settings.root_namespace not in order:
            order.append(self.settings.root_namespace)
        for ns in order:

            def applies(dr: DestinationRuleConfig, ns: str = ns) -> bool:
                if ns != namespace and not visible(dr.export_to, dr.namespace, namespace):
                    return False
                # Workload-scoped rules apply to the selected workloads only.
                return dr.workload_selector is None

            # A rule naming the host exactly is more specific than any wildcard.
            for dr in self._dr_exact.get(ns, {}).get(hostname, ()):
                if applies(dr):
                    return dr
            best: DestinationRuleConfig | None = None
            for dr in self._dr_wild.get(ns, ()):
                if (
                    applies(dr)
                    and host_matches(dr.host, hostname)
                    and (best is None or specificity(dr.host) < specificity(best.host))
                ):
                    best = dr
            if best is not None:
                return best
        return None

    # ---- gateways and the rest ------------------------------------------------------------

    def gateways_for(self, labels: Mapping[str, str]) -> tuple[GatewayConfig, ...]:
        """Gateways whose selector matches ``labels`` (any namespace)."""
        return tuple(
            g
            for g in self.gateways
            if g.selector and all(labels.get(k) == v for k, v in g.selector.items())
        )

    @property
    def mesh_config(self) -> MeshConfig:
        """The mesh config in force: Istio's defaults overlaid with the IstioOperators."""
        operators = self.objects("IstioOperator")
        return self.memo("mesh_config", lambda: mesh_config_from_bodies(o.body for o in operators))

    @property
    def telemetries(self) -> tuple[ScopedTelemetry, ...]:
        """Every Telemetry resource, typed (one that does not fit its model is left out)."""

        def compute() -> tuple[ScopedTelemetry, ...]:
            out = []
            for o in self.objects("Telemetry"):
                try:
                    out.append(
                        ScopedTelemetry(o.namespace, o.name, Telemetry.model_validate(o.body))
                    )
                except pydantic.ValidationError as exc:
                    log.warning("Telemetry %s/%s left out: %s", o.namespace, o.name, exc)
            return tuple(out)

        return self.memo("telemetries", compute)

    def objects(self, kind: str) -> tuple[StoredObject, ...]:
        """Stored objects of a kind the model does not index (Sidecar, policies...)."""
        return self._others.get(kind, ())

    @property
    def sidecars(self) -> tuple[StoredObject, ...]:
        return self.objects("Sidecar")

    def policies(self, kind: str) -> tuple[PolicyConfig[Any], ...]:
        """The security policies of ``kind`` (one of ``POLICY_KINDS``), typed."""
        if kind == "PeerAuthentication":
            return self.peer_authentications
        if kind == "AuthorizationPolicy":
            return self.authorization_policies
        if kind == "RequestAuthentication":
            return self.request_authentications
        raise ValueError(f"{kind} is not one of {', '.join(POLICY_KINDS)}")
