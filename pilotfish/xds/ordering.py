"""Make-before-break: the one place that decides in which order a push reaches a proxy.

:func:`plan_push` compares what a proxy has (name -> content hash, per type) with what it
should have and returns a list of :class:`Step`. The connection sends a step, waits until every
type in it is ACKed (or NACKed, or a timeout passes), then sends the next one:

1. SDS: changed secrets, so clusters and listeners that name them warm at once.
2. CDS: added and changed clusters (never removals), followed in the same step by EDS for every
   pushed EDS cluster the proxy subscribes to, changed or not (Envoy re-warms a modified
   cluster without asking for its endpoints again), plus any endpoint changes. In ADS mode Envoy
   ACKs CDS only once the clusters are warm, so the ACK means "safe to route". With
   ``presend`` (Delta streams) the load assignments of *new* EDS clusters go in the same step
   although the proxy has not subscribed to them yet: Envoy starts the cluster's EDS watch
   while it applies the CDS response, so the next response on the stream warms the cluster
   without the round trip of Envoy asking for it (``Send.unsubscribed``).
3. LDS: added, changed and removed listeners.
4. RDS: changed route configurations; then VHDS: added, changed and removed virtual hosts
   (Envoy files a virtual host under a route config it already holds); then any other type
   the proxy subscribes to: ECDS (extension configs; Envoy asks for one by name once a
   listener's filter names it in ``config_discovery``, and its first request is answered
   from the newest snapshot, so a listener that adds such a filter warms with it).
5. CDS removals, only once listeners and routes that no longer use those clusters are ACKed;
   the step is flagged ``after_clean`` and is skipped if anything in this push was NACKed (the
   clusters then stay until a later push finds nothing refers to them any more).

Only wildcard types (CDS, LDS, VHDS) are removed by the server; names of EDS, RDS and SDS resources
disappear when Envoy unsubscribes from them. Types the proxy has not asked for yet are skipped:
their first request is answered with the newest snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
    WILDCARD_TYPES,
)

#: name -> content hash
Hashes = Mapping[str, str]


@dataclass(frozen=True)
class Subscription:
    """What a proxy asked for on one type: everything (wildcard) or these names. A wildcard
    leaves out ``on_demand`` names (on-demand CDS) unless they are asked for by name."""

    wildcard: bool
    names: frozenset[str] = frozenset()
    on_demand: frozenset[str] = frozenset()

    def covers(self, name: str) -> bool:
        return name in self.names or (self.wildcard and name not in self.on_demand)

    def covered(self, names: set[str]) -> set[str]:
        """Those of ``names`` it covers (set operations, not a check per name)."""
        if not self.wildcard:
            return names & self.names
        if not self.on_demand:
            return set(names)
        return names - (self.on_demand - self.names)


@dataclass(frozen=True)
class Send:
    """Send these names of one type (their newest content) and remove ``removed``."""

    type_url: str
    names: frozenset[str]
    removed: frozenset[str] = frozenset()
    #: Names sent although the proxy does not subscribe to them yet (Delta: the load
    #: assignments of new clusters, sent with them).
    unsubscribed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Step:
    sends: tuple[Send, ...]
    #: Only run when nothing earlier in the push was NACKed (cluster removal).
    after_clean: bool = False

    @property
    def type_urls(self) -> tuple[str, ...]:
        return tuple(s.type_url for s in self.sends)


def changed_names(have: Hashes, want: Hashes, sub: Subscription) -> frozenset[str]:
    """Names the proxy subscribes to (or has: an on-demand cluster it holds is kept up to
    date) whose wanted content differs from what it has."""
    had = have.get
    differ = {n for n, h in want.items() if had(n) != h}
    if not differ:
        return frozenset()
    return frozenset(sub.covered(differ) | (differ & have.keys()))


def plan_push(
    have: Mapping[str, Hashes],
    want: Mapping[str, Hashes],
    subscriptions: Mapping[str, Subscription],
    eds_of_cluster: Mapping[str, str],
    *,
    presend: bool = False,
) -> list[Step]:
    """Order the changes from ``have`` to ``want`` for one proxy (see the module docstring)."""

    def diff(type_url: str) -> tuple[frozenset[str], frozenset[str]]:
        sub = subscriptions.get(type_url)
        if sub is None:
            return frozenset(), frozenset()
        old, new = have.get(type_url, {}), want.get(type_url, {})
        removed = frozenset(old.keys() - new.keys()) if type_url in WILDCARD_TYPES else frozenset()
        return changed_names(old, new, sub), removed

    steps: list[Step] = []
    secrets, _ = diff(SECRET_TYPE)
    if secrets:
        steps.append(Step((Send(SECRET_TYPE, secrets),)))

    clusters, clusters_removed = diff(CLUSTER_TYPE)
    endpoints, _ = diff(ENDPOINT_TYPE)
    eds_sub = subscriptions.get(ENDPOINT_TYPE)
    unsubscribed: frozenset[str] = frozenset()
    if eds_sub is not None and clusters:
        wanted_eds = want.get(ENDPOINT_TYPE, {})
        rewarm = {eds_of_cluster[c] for c in clusters if c in eds_of_cluster}
        endpoints |= {n for n in rewarm if eds_sub.covers(n) and n in wanted_eds}
        if presend:
            # New clusters only: a cluster the proxy has keeps its subscription.
            had = have.get(CLUSTER_TYPE, {})
            new_eds = {eds_of_cluster[c] for c in clusters if c in eds_of_cluster and c not in had}
            unsubscribed = frozenset(
                n for n in new_eds if not eds_sub.covers(n) and n in wanted_eds
            )
    sends: list[Send] = []
    if clusters:
        sends.append(Send(CLUSTER_TYPE, clusters))
    if endpoints or unsubscribed:
        sends.append(Send(ENDPOINT_TYPE, endpoints, unsubscribed=unsubscribed))
    if sends:
        steps.append(Step(tuple(sends)))

    listeners, listeners_removed = diff(LISTENER_TYPE)
    if listeners or listeners_removed:
        steps.append(Step((Send(LISTENER_TYPE, listeners, listeners_removed),)))

    routes, _ = diff(ROUTE_TYPE)
    if routes:
        steps.append(Step((Send(ROUTE_TYPE, routes),)))

    # VHDS after RDS: Envoy takes a virtual host only for a route config it holds (with
    # ``vhds``); removed ones go here too, before the clusters they routed to.
    vhosts, vhosts_removed = diff(VIRTUAL_HOST_TYPE)
    if vhosts or vhosts_removed:
        steps.append(Step((Send(VIRTUAL_HOST_TYPE, vhosts, vhosts_removed),)))

    others = [t for t in subscriptions if t not in _ORDERED]
    for type_url in sorted(others):
        names, removed = diff(type_url)
        if names or removed:
            steps.append(Step((Send(type_url, names, removed),)))

    if clusters_removed:
        steps.append(Step((Send(CLUSTER_TYPE, frozenset(), clusters_removed),), after_clean=True))
    return steps


_ORDERED = frozenset(
    {SECRET_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, VIRTUAL_HOST_TYPE}
)
