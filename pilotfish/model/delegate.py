"""VirtualService delegation: root VirtualServices merged with the delegates they name.

Istio's semantics (``mergeVirtualServicesIfNeeded``):

- a VirtualService without ``hosts`` is a **delegate**: it never applies on its own, only
  through the roots that name it;
- a **root** has ``http[].delegate: {name, namespace}`` (the namespace defaults to the root's);
  each such rule is replaced by the delegate's rules, in the delegate's order, merged with the
  root rule. A delegate that does not exist (or has ``hosts``, so it is not a delegate), or is
  not exported to the root's namespace (its ``exportTo``; none means every namespace), leaves
  that one root rule out;
- a delegate rule's matches must each be covered by a root match (a narrower or equal URI,
  scheme, method, authority, header, query parameter, port, source labels/namespace and
  gateways; regular expressions conflict unless only one side sets the field). Each covering
  root match is merged into it (the delegate's fields win, the root fills what the delegate
  leaves unset); a delegate rule with a match no root match covers is dropped (a conflict);
- the merged rule takes the delegate's actions and, where the delegate sets none, the root
  rule's ``rewrite``, ``timeout``, ``retries``, ``fault``, ``mirror``, ``mirrorPercent(age)``,
  ``corsPolicy`` and ``headers``; its name is ``ROOT-DELEGATE`` when both are named.

Destination hosts and match gateways of a delegate resolve in the delegate's namespace (as
Istio resolves short names before merging). Pure: :func:`merge_delegates` takes the
VirtualServices of one context in Istio's order and returns them merged, with which delegates
each root names (for push scoping: a delegate's change reaches its roots' proxies).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from pilotfish.api.hosts import normalize_gateway, resolve_host
from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX, visible
from pilotfish.api.virtualservice import (
    Destination,
    HTTPMatchRequest,
    HTTPRoute,
    StringMatch,
)
from pilotfish.config.store.base import Key
from pilotfish.model.config import VirtualServiceConfig

__all__ = ["Merged", "is_delegate", "is_root", "merge_delegates"]

#: Route fields a merged rule takes from the root rule when the delegate rule leaves them unset.
_INHERITED = (
    "rewrite",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrorPercent",
    "mirrorPercentage",
    "corsPolicy",
    "headers",
)


def is_delegate(vs: VirtualServiceConfig) -> bool:
    """A VirtualService without hosts: it applies only through a root that names it."""
    return not vs.hosts


def is_root(vs: VirtualServiceConfig) -> bool:
    return bool(vs.hosts) and any(r.delegate is not None for r in vs.http)


@dataclasses.dataclass(frozen=True)
class Merged:
    """The VirtualServices that apply, delegates merged into their roots."""

    virtual_services: tuple[VirtualServiceConfig, ...]
    #: Root key -> the delegate keys its rules name (found or not).
    delegates_by_root: Mapping[Key, tuple[Key, ...]]

    def roots_of(self, delegate: Key) -> tuple[Key, ...]:
        """The roots that name ``delegate``."""
        return tuple(r for r, ds in self.delegates_by_root.items() if delegate in ds)


def merge_delegates(
    vss: Sequence[VirtualServiceConfig], domain_suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> Merged:
    """``vss`` (in Istio's order) with every delegate left out and every root's delegating
    rules replaced by the merged rules of its delegates."""
    delegates = {(v.namespace, v.name): v for v in vss if is_delegate(v)}
    if not any(is_root(v) for v in vss):
        return Merged(tuple(v for v in vss if not is_delegate(v)), {})
    out: list[VirtualServiceConfig] = []
    by_root: dict[Key, tuple[Key, ...]] = {}
    for vs in vss:
        if is_delegate(vs):
            continue
        if not is_root(vs):
            out.append(vs)
            continue
        named: list[Key] = []
        rules: list[HTTPRoute] = []
        for rule in vs.http:
            ref = rule.delegate
            if ref is None:
                rules.append(rule)
                continue
            ns = ref.namespace or vs.namespace
            named.append(Key(vs.key.kind, ns, ref.name or ""))
            delegate = delegates.get((ns, ref.name or ""))
            if delegate is None or not visible(delegate.export_to, ns, vs.namespace):
                continue
            rules.extend(merge_http_routes(rule, _resolved(delegate, domain_suffix)))
        by_root[vs.key] = tuple(named)
        out.append(dataclasses.replace(vs, http=tuple(rules)))
    return Merged(tuple(out), by_root)


def _resolved(delegate: VirtualServiceConfig, domain_suffix: str) -> list[HTTPRoute]:
    """The delegate's rules with destination hosts and match gateways resolved in the
    delegate's namespace (the root resolves what is left in its own)."""
    ns = delegate.namespace

    def dest(d: Destination) -> Destination:
        return d.model_copy(update={"host": resolve_host(d.host, ns, domain_suffix)})

    out = []
    for rule in delegate.http:
        update: dict[str, object] = {
            "route": [
                rd.model_copy(update={"destination": dest(rd.destination)}) for rd in rule.route
            ],
            "match": [
                m.model_copy(update={"gateways": [normalize_gateway(g, ns) for g in m.gateways]})
                for m in rule.match
            ],
            "mirrors": [
                mp.model_copy(update={"destination": dest(mp.destination)}) for mp in rule.mirrors
            ],
        }
        if rule.mirror is not None:
            update["mirror"] = dest(rule.mirror)
        out.append(rule.model_copy(update=update))
    return out


def merge_http_routes(root: HTTPRoute, delegate: Iterable[HTTPRoute]) -> list[HTTPRoute]:
    """The delegate's rules merged with the root rule; conflicting ones left out."""
    out = []
    for sub in delegate:
        merged = merge_http_route(root, sub)
        if merged is not None:
            out.append(merged)
    return out


def merge_http_route(root: HTTPRoute, sub: HTTPRoute) -> HTTPRoute | None:
    """One delegate rule under one root rule; None when their matches conflict."""
    matches = merge_matches(root.match, sub.match)
    if matches is None:
        return None
    update: dict[str, object] = {"match": matches, "delegate": None}
    if not sub.name:
        update["name"] = root.name
    elif root.name:
        update["name"] = f"{root.name}-{sub.name}"
    for field in _INHERITED:
        if getattr(sub, field) is None and getattr(root, field) is not None:
            update[field] = getattr(root, field)
    return sub.model_copy(update=update)


def merge_matches(
    root: Sequence[HTTPMatchRequest], sub: Sequence[HTTPMatchRequest]
) -> list[HTTPMatchRequest] | None:
    """Every delegate match merged with each root match that covers it; None on a conflict
    (a delegate match no root match covers)."""
    if not root:
        return list(sub)
    if not sub:
        return list(root)
    out = []
    for leaf in sub:
        found = False
        for r in root:
            if has_conflict(r, leaf):
                continue
            out.append(merge_match(r, leaf))
            found = True
        if not found:
            return None
    return out or None


def merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    """The delegate's match with what it leaves unset taken from the root's."""
    update: dict[str, object] = {}
    if not leaf.name:
        update["name"] = root.name
    elif root.name:
        update["name"] = f"{root.name}-{leaf.name}"
    for field in ("uri", "scheme", "method", "authority"):
        if getattr(leaf, field) is None:
            update[field] = getattr(root, field)
    for field in ("headers", "withoutHeaders", "queryParams", "sourceLabels"):
        update[field] = {**getattr(root, field), **getattr(leaf, field)}
    if not leaf.port:
        update["port"] = root.port
    if not leaf.sourceNamespace:
        update["sourceNamespace"] = root.sourceNamespace
    if not leaf.gateways:
        update["gateways"] = list(root.gateways)
    return leaf.model_copy(update=update)


def has_conflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """Does the delegate match ``leaf`` ask for something the root match ``root`` rules out?"""
    for field in ("uri", "scheme", "method", "authority"):
        if string_match_conflict(getattr(root, field), getattr(leaf, field)):
            return True
    for key, value in leaf.headers.items():
        if string_match_conflict(root.headers.get(key), value):
            return True
    for key, value in leaf.withoutHeaders.items():
        if string_match_conflict(root.withoutHeaders.get(key), value):
            return True
    for key, value in leaf.queryParams.items():
        if string_match_conflict(root.queryParams.get(key), value):
            return True
    if bool(root.ignoreUriCase) != bool(leaf.ignoreUriCase):
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.sourceNamespace and leaf.sourceNamespace != root.sourceNamespace:
        return True
    for label, wanted in leaf.sourceLabels.items():
        if label in root.sourceLabels and root.sourceLabels[label] != wanted:
            return True
    if root.gateways and leaf.gateways:
        if len(root.gateways) < len(leaf.gateways):
            return True
        if not set(leaf.gateways) <= set(root.gateways):
            return True
    return False


def string_match_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """Istio's rule: no conflict when either side is unset; a regular expression conflicts
    with anything on the other side; an exact root needs the same exact leaf; a prefix root
    needs a leaf (prefix or exact) that starts with it."""
    if root is None or leaf is None:
        return False
    if root.regex and (leaf.regex or leaf.prefix or leaf.exact):
        return True
    if leaf.regex and (root.regex or root.prefix or root.exact):
        return True
    if root.exact:
        return bool(leaf.prefix) or leaf.exact != root.exact
    if root.prefix:
        if leaf.prefix:
            return not leaf.prefix.startswith(root.prefix)
        if leaf.exact:
            return not leaf.exact.startswith(root.prefix)
    return True
