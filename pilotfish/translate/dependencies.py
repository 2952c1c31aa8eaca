"""Push scope: which proxies a change reaches, and which of their resources it can touch.

Istio's ``ProxyDependencies`` / ``ConfigsUpdated`` rules, for Pilotfish's translation. Pure:
:meth:`Changes.between` compares two PushContexts (the one the last push was planned from and
the current one) and :func:`scope_for` answers, for one proxy, ``None`` (nothing it receives
can have changed) or a :data:`Scope`: per type URL, the resource names to regenerate and
compare, or ``None`` for every resource of that type. A rule that is not sure returns
:data:`FULL`.

What a change reaches (both the old and the new version of an object are considered, so a
proxy that stops seeing something is reached too):

- **VirtualService** bound to ``mesh``: RDS of the sidecars of the namespaces it is exported
  to (plus LDS when it has ``tcp`` or ``tls`` routes, which live in listeners). Bound to a
  Gateway ``ns/name``: RDS and LDS of the routers that Gateway selects. Clusters do not depend
  on VirtualServices (every visible service's clusters and subsets exist anyway), except for
  a sidecar with a ``Sidecar``: its scope imports the VirtualServices' destinations, so CDS,
  EDS and LDS too. A delegate VirtualService (no hosts) reaches what its roots (in the old or
  the new context) reach, and nothing through its own namespace or ``exportTo``.
- **DestinationRule**: for proxies whose namespace resolves it (its own namespace, or one it is
  exported to), CDS and EDS of the host's clusters (default and every subset of the old and
  new rule, every port). A wildcard host: every cluster. RDS too when it is one of the rules
  route configurations read (:func:`route_rules`: consistent-hash policies live in routes),
  SDS when it is one of the rules the secrets depend on (:func:`secret_rules`:
  ``credentialName``). A rule of neither kind (the usual subset added) changes clusters only,
  and route configurations are then carried over to the next context as they are.
- **Gateway**: everything of the routers it selects (old or new selector).
- **PeerAuthentication, AuthorizationPolicy, RequestAuthentication**: LDS of the workloads
  they select (root namespace: every namespace; no selector: the whole namespace). A
  PeerAuthentication that sets (or set) ``DISABLE`` also reaches every proxy's CDS and EDS:
  clients send plaintext to such ports (automatic mTLS follows endpoint metadata).
- **Secret**: SDS of the proxies of its namespace; for routers of that namespace or selected
  by a Gateway of that namespace also LDS and RDS (a server whose credential is missing is
  left out).
- **Telemetry, Sidecar, EnvoyFilter**: everything of the proxies of their namespace (every
  proxy when in the root namespace). **IstioOperator** (mesh config) and kinds not known
  here: everything of every proxy.
- **Registry**: a service whose definition changed (ports, VIP, exportTo, added, removed):
  everything of the proxies that see it (old or new) or share its namespace; a service whose
  endpoints alone changed: CDS and EDS of its clusters for the proxies that see it (cluster
  TLS SANs and DNS clusters depend on endpoints); a change of the proxy's own Pod or workload:
  everything of that proxy. Namespace, ServiceAccount, Deployment and Event objects reach no
  proxy directly (what they change shows up as registry changes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pilotfish.api.destinationrule import TrafficPolicy
from pilotfish.api.hosts import MESH_GATEWAY, host_matches
from pilotfish.api.mesh import visible
from pilotfish.api.node import NodeInfo
from pilotfish.api.typeurls import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
)
from pilotfish.api.vhost_directory import vhost_resource_name
from pilotfish.config.store.base import Key
from pilotfish.model.config import (
    DestinationRuleConfig,
    GatewayConfig,
    PolicyConfig,
    VirtualServiceConfig,
)
from pilotfish.model.proxy import Proxy, own_named_ports
from pilotfish.model.push_context import PushContext
from pilotfish.model.sidecar import select_sidecar
from pilotfish.registry.types import Service
from pilotfish.translate.clusters import proxy_locality
from pilotfish.translate.common import ClusterKey

#: Resource names of one type to regenerate; ``None``: every resource of that type.
Names = frozenset[str] | None
#: Type URL -> names. Types not present are left as they are.
Scope = Mapping[str, Names]

ALL_TYPES = (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
    EXTENSION_CONFIG_TYPE,
)
FULL: Scope = MappingProxyType(dict.fromkeys(ALL_TYPES))

REGISTRY_KINDS = frozenset({"Service", "ServiceEntry", "Pod", "WorkloadEntry"})
#: Kinds whose objects reach no proxy by themselves.
INERT_KINDS = frozenset({"Namespace", "ServiceAccount", "Deployment", "Event"})
POLICY_KINDS = frozenset({"PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"})
#: Kinds that change a whole namespace's proxies (every proxy in the root namespace).
NAMESPACE_WIDE_KINDS = frozenset({"Telemetry", "Sidecar", "EnvoyFilter"})


def _policies(dr: DestinationRuleConfig) -> list[Any]:
    """Every traffic policy of a rule: top level, per subset, and their port-level settings."""
    tops: list[TrafficPolicy] = [dr.traffic_policy] if dr.traffic_policy is not None else []
    tops += [s.trafficPolicy for s in dr.subsets if s.trafficPolicy is not None]
    return [*tops, *(p for t in tops for p in t.portLevelSettings)]


def _hashes(dr: DestinationRuleConfig) -> bool:
    """Does the rule set a consistent hash anywhere (routes carry its ``hash_policy``)?"""
    return any(
        p.loadBalancer is not None and p.loadBalancer.consistentHash is not None
        for p in _policies(dr)
    )


def _credentials(dr: DestinationRuleConfig) -> bool:
    """Does the rule name a ``credentialName`` anywhere (clusters refer to it over SDS)?"""
    return any(p.tls is not None and p.tls.credentialName for p in _policies(dr))


def _rules_near(
    ctx: PushContext, name: str, marked: Callable[[DestinationRuleConfig], bool]
) -> frozenset[Key]:
    """The DestinationRules that can decide whether a ``marked`` rule applies somewhere: the
    marked ones, every rule of the same host (one may shadow another for some namespace) and
    every wildcard rule (a wildcard may shadow an exact host, and an exact host a wildcard);
    every rule when a marked one is a wildcard. Empty when none is marked (the usual mesh)."""

    def compute() -> frozenset[Key]:
        rules = ctx.destination_rules
        hosts = {dr.host for dr in rules if marked(dr)}
        if not hosts:
            return frozenset()
        if any(h.startswith("*") for h in hosts):
            return frozenset(dr.key for dr in rules)
        return frozenset(dr.key for dr in rules if dr.host in hosts or dr.host.startswith("*"))

    return ctx.memo(("dependencies", name), compute)


def route_rules(ctx: PushContext) -> frozenset[Key]:
    """The DestinationRules route configurations can depend on: route configurations read a
    rule only for its consistent-hash policy (``hash_policy``, and no retry on such routes)."""
    return _rules_near(ctx, "route_rules", _hashes)


def route_rule_revisions(ctx: PushContext) -> tuple[tuple[Key, int], ...]:
    """:func:`route_rules` with their revisions: with ``PushContext.route_epoch``, everything
    of the config a route configuration is built from (its reuse inputs)."""

    def compute() -> tuple[tuple[Key, int], ...]:
        revisions = ctx.config_revisions() if route_rules(ctx) else {}
        return tuple(sorted((k, revisions[k]) for k in route_rules(ctx)))

    return ctx.memo(("dependencies", "route_rule_revisions"), compute)


def secret_rules(ctx: PushContext) -> frozenset[Key]:
    """The DestinationRules the secrets a proxy is sent can depend on (``credentialName``)."""
    return _rules_near(ctx, "secret_rules", _credentials)


class _Builder:
    def __init__(self) -> None:
        self.types: dict[str, set[str] | None] = {}

    @property
    def full(self) -> bool:
        return len(self.types) == len(ALL_TYPES) and all(v is None for v in self.types.values())

    def add(self, type_url: str, names: Iterable[str] | None = None) -> None:
        if type_url in self.types and self.types[type_url] is None:
            return
        if names is None:
            self.types[type_url] = None
        else:
            self.types.setdefault(type_url, set()).update(names)  # type: ignore[union-attr]

    def add_routes(self, vhosts: Iterable[str] | None = None) -> None:
        """Route configs, and the VHDS virtual hosts ``vhosts`` (``None``: all of them). A
        route config in VHDS form holds no service's routes: it changes only with the set of
        ports, which a change of routing rules alone never changes."""
        self.add(ROUTE_TYPE)
        self.add(VIRTUAL_HOST_TYPE, vhosts)

    def add_full(self) -> None:
        for t in ALL_TYPES:
            self.types[t] = None

    def scope(self) -> Scope | None:
        if not self.types:
            return None
        if self.full:
            return FULL
        return {t: (None if n is None else frozenset(n)) for t, n in self.types.items()}


def _selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def _policy_selector(policy: PolicyConfig[Any]) -> Mapping[str, str] | None:
    selector = policy.spec.selector
    return selector.matchLabels if selector is not None else None


@dataclass
class Changes:
    """What differs between two contexts, indexed for :func:`scope_for`."""

    old: PushContext
    new: PushContext
    #: Changed config objects (added, modified or deleted): key -> (old, new) entries.
    configs: dict[Key, tuple[Any, Any]] = field(default_factory=dict)
    #: Hostnames whose service definition changed (added, removed, modified).
    services: frozenset[str] = frozenset()
    #: Hostnames whose endpoints alone changed.
    endpoints: frozenset[str] = frozenset()
    #: ``namespace/name`` of workloads (pods, workload entries, connected sidecars) that
    #: changed -> the uids (``Pod/ns/name``, ``Sidecar/ns/name``...) that changed under it.
    workloads: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Something changed that every proxy depends on (mesh config, unknown kinds).
    everything: bool = False
    _names: dict[Any, frozenset[str]] = field(default_factory=dict)
    _pairs: dict[Any, frozenset[tuple[str, int]]] = field(default_factory=dict)

    @classmethod
    def between(cls, old: PushContext, new: PushContext) -> Changes:
        before, after = old.config_revisions(), new.config_revisions()
        configs: dict[Key, tuple[Any, Any]] = {}
        everything = old.settings != new.settings
        for key in before.keys() | after.keys():
            if before.get(key) == after.get(key) or key.kind in REGISTRY_KINDS:
                continue
            if key.kind in INERT_KINDS:
                continue
            configs[key] = (old.config(key), new.config(key))
            if key.kind == "VirtualService":
                # A delegate reaches the proxies of the roots that name it (merged entries).
                for root in old.delegation.roots_of(key) + new.delegation.roots_of(key):
                    configs[root] = (old.config(root), new.config(root))
        osvc, nsvc = old.registry.services, new.registry.services
        services = frozenset(h for h in osvc.keys() | nsvc.keys() if osvc.get(h) != nsvc.get(h))
        oeps, neps = old.registry.endpoints, new.registry.endpoints
        endpoints = (
            frozenset(k[0] for k in oeps.keys() | neps.keys() if oeps.get(k) != neps.get(k))
            - services
        )
        owl, nwl = old.registry.workloads, new.registry.workloads
        changed: dict[str, set[str]] = {}
        for uid in owl.keys() | nwl.keys():
            before_w, after_w = owl.get(uid), nwl.get(uid)
            if before_w == after_w:
                continue
            for w in (before_w, after_w):
                if w is not None:
                    changed.setdefault(f"{w.namespace}/{w.name}", set()).add(uid)
        workloads = {k: frozenset(v) for k, v in changed.items()}
        return cls(old, new, configs, services, endpoints, workloads, everything)

    @property
    def empty(self) -> bool:
        return not (
            self.configs or self.services or self.endpoints or self.workloads or self.everything
        )

    def describe(self) -> str:
        parts = [f"{k.kind}/{k.namespace}/{k.name}" for k in sorted(self.configs)]
        parts += [f"service {h}" for h in sorted(self.services)]
        parts += [f"endpoints {h}" for h in sorted(self.endpoints)]
        if self.everything:
            parts.append("mesh settings")
        return ", ".join(parts) or "nothing"

    @property
    def route_rules(self) -> frozenset[Key]:
        """DestinationRules route configurations depend on, in either context."""
        return route_rules(self.old) | route_rules(self.new)

    @property
    def secret_rules(self) -> frozenset[Key]:
        """DestinationRules secrets depend on, in either context."""
        return secret_rules(self.old) | secret_rules(self.new)

    def own_sidecar_only(self, node: NodeInfo) -> bool:
        """Only ``node``'s own connected-sidecar workload changed (it connected or left), in
        nothing its own configuration reads of it (container port names, locality): its
        endpoint is then an endpoint change of its services like any other, and a sidecar
        connecting for the first time is not generated twice in full (a storm of a thousand
        new proxies). Its Pod or WorkloadEntry changing still reaches everything of it."""
        if node.proxy_type != "sidecar":
            return False
        uids = self.workloads.get(f"{node.namespace}/{node.pod_name}", frozenset())
        if uids != {f"Sidecar/{node.namespace}/{node.pod_name}"}:
            return False
        me = Proxy(node)
        return own_named_ports(self.old, node) == own_named_ports(self.new, node) and (
            proxy_locality(self.old, me) == proxy_locality(self.new, me)
        )

    # ---- names, computed once per change ----------------------------------------------------

    def host_clusters(self, namespace: str, host: str) -> frozenset[str]:
        """Outbound cluster names of ``host`` a proxy of ``namespace`` has in either context:
        every port, the default and every subset of the DestinationRule it resolves."""
        key = ("host", namespace, host)
        found = self._names.get(key)
        if found is None:
            names: set[str] = set()
            for ctx in (self.old, self.new):
                svc = ctx.service(host)
                if svc is None:
                    continue
                dr = ctx.destination_rule(namespace, host)
                names.update(_cluster_names(svc, dr))
            found = self._names[key] = frozenset(names)
        return found

    def host_vhosts(self, node: NodeInfo, hosts: Iterable[str]) -> frozenset[str]:
        """VHDS names (``ROUTE_CONFIG/HOST:PORT``) of the services ``hosts`` match (exact
        names or wildcards) in either context, on each of their HTTP ports: the virtual hosts
        of ``node`` that routing rules for ``hosts`` can change."""
        hosts = tuple(sorted(set(hosts)))
        key = ("host_ports", hosts)
        pairs = self._pairs.get(key)
        if pairs is None:
            found: set[tuple[str, int]] = set()
            for ctx in (self.old, self.new):
                for host in hosts:
                    if host.startswith("*"):
                        services = [
                            svc
                            for name, svc in ctx.registry.services.items()
                            if host_matches(host, name)
                        ]
                    else:
                        one = ctx.service(host)
                        services = [one] if one is not None else []
                    for svc in services:
                        found.update(
                            (svc.hostname, sp.port) for sp in svc.ports if sp.protocol.is_http
                        )
            pairs = self._pairs[key] = frozenset(found)
        # The route config a virtual host belongs to: the port's, or the one outbound route
        # config of a sidecar without traffic capture.
        single = str(node.outbound_port) if node.interception_mode == "NONE" else None
        names_key = ("vhosts", hosts, single)
        names = self._names.get(names_key)
        if names is None:
            names = self._names[names_key] = frozenset(
                vhost_resource_name(single or str(port), f"{host}:{port}") for host, port in pairs
            )
        return names

    def rule_clusters(
        self, namespace: str, rules: Iterable[DestinationRuleConfig]
    ) -> frozenset[str]:
        """Cluster names of the hosts ``rules`` name, for a proxy of ``namespace``, with the
        subsets of the rules themselves (a subset removed from the rule is named too)."""
        rules = tuple(rules)
        key = ("rules", namespace, tuple((dr.key, dr.revision) for dr in rules))
        found = self._names.get(key)
        if found is not None:
            return found
        names: set[str] = set()
        for dr in rules:
            for ctx in (self.old, self.new):
                svc = ctx.service(dr.host)
                if svc is not None:
                    names.update(_cluster_names(svc, dr))
            names.update(self.host_clusters(namespace, dr.host))
        found = self._names[key] = frozenset(names)
        return found


def _cluster_names(svc: Service, dr: DestinationRuleConfig | None) -> set[str]:
    subsets = [""] + [s.name for s in (dr.subsets if dr else ()) if s.name]
    return {ClusterKey.outbound(sp.port, s, svc.hostname).name for sp in svc.ports for s in subsets}


def _versions(entry: tuple[Any, Any]) -> list[Any]:
    return [v for v in entry if v is not None]


def _router_gateways(ctx: PushContext, labels: Mapping[str, str]) -> list[GatewayConfig]:
    return list(ctx.gateways_for(labels))


def scope_for(node: NodeInfo, changes: Changes) -> Scope | None:
    """What of ``node``'s configuration ``changes`` can touch (None: nothing)."""
    if changes.everything:
        return FULL
    ns, labels = node.namespace, node.labels
    router = node.proxy_type == "router"
    root = changes.new.settings.root_namespace
    b = _Builder()
    if f"{ns}/{node.pod_name}" in changes.workloads and not changes.own_sidecar_only(node):
        return FULL
    for host in changes.services:
        for ctx in (changes.old, changes.new):
            svc = ctx.service(host)
            if svc is not None and (svc.namespace == ns or svc.visible_from(ns)):
                return FULL
    for host in changes.endpoints:
        svc = changes.new.service(host) or changes.old.service(host)
        if svc is not None and svc.visible_from(ns):
            names = changes.host_clusters(ns, host)
            b.add(CLUSTER_TYPE, names)
            b.add(ENDPOINT_TYPE, names)
    for key, entry in changes.configs.items():
        kind = key.kind
        versions = _versions(entry)
        if kind == "VirtualService":
            _virtual_service(b, versions, node, changes)
        elif kind == "DestinationRule":
            rules = [
                v
                for v in versions
                if isinstance(v, DestinationRuleConfig)
                and (v.namespace == ns or visible(v.export_to, v.namespace, ns))
            ]
            if not rules:
                continue
            if any(r.host.startswith("*") for r in rules):
                b.add(CLUSTER_TYPE)
                b.add(ENDPOINT_TYPE)
            else:
                names = changes.rule_clusters(ns, rules)
                b.add(CLUSTER_TYPE, names)
                b.add(ENDPOINT_TYPE, names)
            if key in changes.route_rules:
                # Routes name a rule's consistent-hash policy: the virtual hosts of its hosts.
                if router:
                    b.add(ROUTE_TYPE)
                else:
                    b.add_routes(changes.host_vhosts(node, [r.host for r in rules]))
            if key in changes.secret_rules:
                b.add(SECRET_TYPE)
        elif kind == "Gateway":
            if router and any(
                isinstance(v, GatewayConfig) and v.selector and _selects(v.selector, labels)
                for v in versions
            ):
                return FULL
        elif kind in POLICY_KINDS:
            if kind == "PeerAuthentication" and any(_disables(v) for v in versions):
                # Clients send plaintext to endpoints whose port is DISABLE (automatic mTLS
                # reads it from the endpoints' metadata): every client's EDS and CDS.
                b.add(CLUSTER_TYPE)
                b.add(ENDPOINT_TYPE)
            if any(
                isinstance(v, PolicyConfig)
                and v.namespace in (root, ns)
                and _selects(_policy_selector(v), labels)
                for v in versions
            ):
                b.add(LISTENER_TYPE)
        elif kind == "Secret":
            _secret(b, key, node, changes)
        elif kind in NAMESPACE_WIDE_KINDS:
            if key.namespace in (root, ns):
                return FULL
        else:
            # IstioOperator (mesh config) and kinds not known here: not sure, push fully.
            return FULL
        if b.full:
            return FULL
    return b.scope()


def _disables(policy: Any) -> bool:
    """Does a PeerAuthentication set DISABLE, workload-wide or on a port?"""
    if not isinstance(policy, PolicyConfig):
        return False
    spec = policy.spec
    modes = [spec.mtls, *spec.portLevelMtls.values()]
    return any(m is not None and (m.mode or "").upper() == "DISABLE" for m in modes)


def _virtual_service(b: _Builder, versions: list[Any], node: NodeInfo, changes: Changes) -> None:
    ns = node.namespace
    router = node.proxy_type == "router"
    for vs in versions:
        if not isinstance(vs, VirtualServiceConfig) or not vs.hosts:
            # A delegate (no hosts) routes nothing by itself: its roots are in the changes.
            continue
        refs = vs.referenced_gateways()
        if not router:
            if MESH_GATEWAY in refs and visible(vs.export_to, vs.namespace, ns):
                b.add_routes(changes.host_vhosts(node, vs.hosts))
                if vs.tcp or vs.tls:
                    b.add(LISTENER_TYPE)
                if any(select_sidecar(c, ns, node.labels) for c in (changes.old, changes.new)):
                    # A Sidecar scope imports the destinations of the VirtualServices of its
                    # hosts: their clusters (and TCP chains) come and go with the routes.
                    b.add(CLUSTER_TYPE)
                    b.add(ENDPOINT_TYPE)
                    b.add(LISTENER_TYPE)
            continue
        for ctx in (changes.old, changes.new):
            if any(gw.ref in refs for gw in _router_gateways(ctx, node.labels)):
                b.add(ROUTE_TYPE)
                b.add(LISTENER_TYPE)


def _secret(b: _Builder, key: Key, node: NodeInfo, changes: Changes) -> None:
    ns = key.namespace
    router = node.proxy_type == "router"
    if node.namespace == ns:
        b.add(SECRET_TYPE)
        if router:
            b.add(LISTENER_TYPE)
            b.add(ROUTE_TYPE)
        return
    if not router:
        return
    for ctx in (changes.old, changes.new):
        if any(gw.namespace == ns for gw in _router_gateways(ctx, node.labels)):
            b.add(SECRET_TYPE)
            b.add(LISTENER_TYPE)
            b.add(ROUTE_TYPE)
            return


__all__ = [
    "ALL_TYPES",
    "FULL",
    "Changes",
    "Names",
    "Scope",
    "route_rule_revisions",
    "route_rules",
    "scope_for",
    "secret_rules",
]
