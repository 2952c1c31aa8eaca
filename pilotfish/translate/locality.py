"""Locality load balancing: a cluster's endpoint groups prioritized or weighted relative to the
calling proxy's locality, as Istio's ``ApplyLocalityLoadBalancer`` does.

Which setting applies (:func:`locality_setting`, Istio's ``GetLocalityLbSetting``): the
DestinationRule's ``loadBalancer.localityLbSetting`` (for the subset and port); none there,
the mesh config's ``localityLbSetting`` (Istio's default mesh enables it); ``enabled: false``
in the rule (or, without a rule setting, in the mesh) turns it off.

What it does to the load assignment of one proxy (:func:`localize`), one of:

- ``distribute``: the first entry whose ``from`` matches the proxy's locality (``*`` matches
  the rest of the path) gives each endpoint group whose locality matches a ``to`` key the
  weight of that key, split over the groups it matches in proportion to their own weights,
  rounded up; groups no ``to`` key matches get no endpoints. The cluster balances by locality
  weight (``locality_weighted_lb_config``). A proxy that no ``from`` matches keeps every group,
  each weighted by its number of endpoints (Envoy would not send to unweighted groups);
- failover, only when the cluster has outlier detection (else Envoy never fails over):
  ``failoverPriority`` first (the proxy's labels compared with each endpoint's, in the given
  order; ``label=value`` compares with that value; the more leading labels match, the higher
  the priority), then, when ``failover`` is given too or ``failoverPriority`` is not, the
  priority by locality: same region/zone/subzone 0, same region and zone 1, same region 2,
  another region 3, or 4 when a ``failover`` entry for the proxy's region names another
  region than the endpoint's. Priorities are then renumbered from 0 without gaps.

Pure: the same proxy locality and labels give the same assignment, so the generator shares
it among proxies of one locality (and labels, with ``failoverPriority``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from pilotfish.api.destinationrule import LocalityLoadBalancerSetting
from pilotfish.registry.types import Endpoint

__all__ = [
    "LocalityLb",
    "apply_to_cluster",
    "lb_priority",
    "locality_proto",
    "locality_setting",
    "localize",
    "parse_locality",
]


@dataclass(frozen=True)
class LocalityLb:
    """The locality setting of one cluster and whether failover may apply (outlier
    detection is set)."""

    setting: LocalityLoadBalancerSetting
    failover: bool

    @property
    def needs_labels(self) -> bool:
        """Does the result depend on the proxy's labels (``failoverPriority``)?"""
        return bool(self.setting.failoverPriority) and not self.setting.distribute

    @property
    def active(self) -> bool:
        """Does it change anything: weights, or priorities with outlier detection."""
        return bool(self.setting.distribute) or self.failover


def locality_setting(
    mesh: LocalityLoadBalancerSetting | None,
    rule: LocalityLoadBalancerSetting | None,
    outlier_detection: bool,
) -> LocalityLb | None:
    """Istio's choice between the rule's and the mesh's setting; None when disabled."""
    if rule is not None:
        if rule.enabled is False:
            return None
        return LocalityLb(rule, outlier_detection)
    if mesh is None or mesh.enabled is False:
        return None
    return LocalityLb(mesh, outlier_detection)


def parse_locality(text: str) -> tuple[str, str, str]:
    """``region/zone/subzone`` (parts may be missing) as three strings."""
    parts = [*text.split("/"), "", "", ""]
    return parts[0], parts[1], parts[2]


def _locality_match(locality: tuple[str, str, str], pattern: str) -> bool:
    """Istio's LocalityMatch: ``region/zone/subzone`` with ``*`` matching what is left."""
    for i, part in enumerate(pattern.split("/")[:3]):
        if part == "*":
            return True
        if part != locality[i]:
            return False
    return True


def lb_priority(proxy: tuple[str, str, str], endpoint: tuple[str, str, str]) -> int:
    """0: same region, zone and subzone; 1: same region and zone; 2: same region; 3: other."""
    if proxy[0] != endpoint[0]:
        return 3
    if proxy[1] != endpoint[1]:
        return 2
    if proxy[2] != endpoint[2]:
        return 1
    return 0


def apply_to_cluster(cluster: cluster_pb2.Cluster, lb: LocalityLb) -> None:
    """``distribute`` weights localities: the cluster balances by locality weight."""
    if lb.setting.distribute:
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def _group_locality(group: ec.LocalityLbEndpoints) -> tuple[str, str, str]:
    loc = group.locality
    return loc.region, loc.zone, loc.sub_zone


def localize(
    cla: endpoint_pb2.ClusterLoadAssignment,
    endpoints: Sequence[Endpoint],
    lb: LocalityLb,
    proxy_locality: str,
    proxy_labels: Mapping[str, str],
) -> endpoint_pb2.ClusterLoadAssignment:
    """A copy of ``cla`` (its groups built from ``endpoints`` by ``load_assignment``: one
    group per locality, sorted, endpoints in order) for a proxy at ``proxy_locality``."""
    out = endpoint_pb2.ClusterLoadAssignment()
    out.CopyFrom(cla)
    here = parse_locality(proxy_locality)
    setting = lb.setting
    if setting.distribute:
        _distribute(out, here, setting)
        return out
    if not lb.failover:
        return out
    if setting.failoverPriority:
        _failover_priority(out, endpoints, proxy_labels, setting.failoverPriority)
        if setting.failover:
            _failover(out, here, setting)
    else:
        _failover(out, here, setting)
    return out


def _distribute(
    cla: endpoint_pb2.ClusterLoadAssignment,
    here: tuple[str, str, str],
    setting: LocalityLoadBalancerSetting,
) -> None:
    for entry in setting.distribute:
        if not _locality_match(here, entry.from_ or ""):
            continue
        unmatched = set(range(len(cla.endpoints)))
        for pattern, weight in entry.to.items():
            own: dict[int, int] = {}
            for i, group in enumerate(cla.endpoints):
                if i in unmatched and _locality_match(_group_locality(group), pattern):
                    unmatched.discard(i)
                    w = (
                        group.load_balancing_weight.value
                        if group.HasField("load_balancing_weight")
                        else 1
                    )
                    own[i] = w
            total = sum(own.values())
            for i, w in own.items():
                value = math.ceil(w * weight / total) if total else 0
                if value > 0:
                    cla.endpoints[i].load_balancing_weight.value = value
        for i in unmatched:
            del cla.endpoints[i].lb_endpoints[:]
        return
    # No entry for this proxy: every group weighted by its size.
    for group in cla.endpoints:
        group.load_balancing_weight.value = max(1, len(group.lb_endpoints))


def _failover(
    cla: endpoint_pb2.ClusterLoadAssignment,
    here: tuple[str, str, str],
    setting: LocalityLoadBalancerSetting,
) -> None:
    by_priority: dict[int, list[int]] = {}
    for i, group in enumerate(cla.endpoints):
        loc = _group_locality(group)
        priority = lb_priority(here, loc)
        if priority == 3:
            for fo in setting.failover:
                if fo.from_ == here[0]:
                    if loc[0] != fo.to:
                        priority = 4
                    break
        # Keep what failoverPriority decided: at most five locality levels per level.
        value = group.priority * 5 + priority
        group.priority = value
        by_priority.setdefault(value, []).append(i)
    _renumber(cla.endpoints, by_priority)


def _renumber(groups: Sequence[ec.LocalityLbEndpoints], by_priority: dict[int, list[int]]) -> None:
    for rank, value in enumerate(sorted(by_priority)):
        for i in by_priority[value]:
            groups[i].priority = rank


def _failover_priority(
    cla: endpoint_pb2.ClusterLoadAssignment,
    endpoints: Sequence[Endpoint],
    proxy_labels: Mapping[str, str],
    priorities: Sequence[str],
) -> None:
    """Split each locality group by how many leading ``failoverPriority`` labels the endpoint
    shares with the proxy."""
    if not proxy_labels:
        return
    names: list[str] = []
    overrides: dict[str, str] = {}
    for item in priorities:
        name, eq, value = item.partition("=")
        names.append(name)
        if eq:
            overrides[name] = value
    lowest = len(names)
    by_locality: dict[str, list[Endpoint]] = {}
    for ep in endpoints:
        by_locality.setdefault(ep.locality, []).append(ep)
    groups_in_order = [by_locality[k] for k in sorted(by_locality)]
    new_groups: list[ec.LocalityLbEndpoints] = []
    for group, eps in zip(cla.endpoints, groups_in_order, strict=True):
        by_level: dict[int, list[int]] = {}
        for j, ep in enumerate(eps):
            level = 0
            for k, name in enumerate(names):
                wanted = overrides.get(name, proxy_labels.get(name))
                if wanted != ep.labels.get(name):
                    level = lowest - k
                    break
            by_level.setdefault(level, []).append(j)
        for level in sorted(by_level):
            part = ec.LocalityLbEndpoints()
            part.CopyFrom(group)
            del part.lb_endpoints[:]
            part.priority = level
            weight = 0
            for j in by_level[level]:
                part.lb_endpoints.append(group.lb_endpoints[j])
                weight += group.lb_endpoints[j].load_balancing_weight.value
            part.load_balancing_weight.value = weight
            if not weight:
                part.ClearField("load_balancing_weight")
            new_groups.append(part)
    del cla.endpoints[:]
    cla.endpoints.extend(new_groups)
    by_priority: dict[int, list[int]] = {}
    for i, g in enumerate(cla.endpoints):
        by_priority.setdefault(g.priority, []).append(i)
    _renumber(cla.endpoints, by_priority)


def locality_proto(text: str) -> base_pb2.Locality:
    region, zone, sub_zone = parse_locality(text)
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)
