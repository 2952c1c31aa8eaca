"""Rules of a VirtualService that can never be used (IST0130) and matches that an earlier one
already takes (IST0131), for ``http``, ``tcp`` and ``tls`` rules, as Istio judges them.

Envoy tries routes in order and takes the first that matches, so, in each section:

- a rule without ``match`` takes everything: a later rule without ``match`` is IST0130
  ``only the last rule can have no matches``, and each match of a later rule is IST0130
  ``route without matches defined before``;
- a match equal to a match of an earlier rule (its ``name`` aside) is IST0131; when every
  match of a rule is such a duplicate, the rule is IST0130 ``all matches used by prior rules``;
- HTTP only: a ``uri.prefix`` match is covered by an earlier prefix match when its prefix
  extends the earlier one, the port is the same, the method and authority extend the earlier
  ones (a match without ``method`` stands for ``GET``, as in Istio), and the headers, query
  parameters and ``withoutHeaders`` have the same keys with values extending the earlier
  ones: IST0131 ``#0 of prefix /debugs`` ... ``#0 of prefix /debug on #0``. A ``POST`` match
  after a ``GET`` match of a shorter prefix is not covered.

Rules and matches are named as Istio names them: ``"name"`` when an HTTP rule or match has
one, else ``#index`` (TCP and TLS rules and matches have no names).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from pilotfish.api.virtualservice import HTTPMatchRequest, HTTPRoute, StringMatch, VirtualService
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.messages import Message

__all__ = ["analyze_unreachable_rules"]


def _rule_name(route: Any, index: int) -> str:
    name = getattr(route, "name", None) if isinstance(route, HTTPRoute) else None
    return f'"{name}"' if name else f"#{index}"


def _match_name(match: Any, index: int) -> str:
    name = getattr(match, "name", None) if isinstance(match, HTTPMatchRequest) else None
    return f'"{name}"' if name else f"#{index}"


def _canonical(match: BaseModel) -> str:
    """The match's conditions as comparable JSON (an HTTP match's name is not a condition)."""
    body = match.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    body.pop("name", None)
    return json.dumps(body, sort_keys=True)


def _string_match(sm: StringMatch | None) -> str:
    """``exact:X`` / ``prefix:X``; empty for no match or a regex (Istio's reading)."""
    if sm is None:
        return ""
    if sm.exact is not None:
        return f"exact:{sm.exact}"
    if sm.prefix is not None:
        return f"prefix:{sm.prefix}"
    return ""


@dataclass(frozen=True, slots=True)
class _PrefixMatch:
    rule: str
    match: str
    prefix: str
    port: int | None
    method: str
    authority: str
    headers: dict[str, str]
    query: dict[str, str]
    without_headers: dict[str, str]


def _prefix_match(
    route: HTTPRoute, rule: int, match: HTTPMatchRequest, i: int
) -> _PrefixMatch | None:
    if match.uri is None or not match.uri.prefix:
        return None
    return _PrefixMatch(
        _rule_name(route, rule),
        _match_name(match, i),
        match.uri.prefix,
        match.port,
        _string_match(match.method) or "exact:GET",
        _string_match(match.authority),
        {k: _string_match(v) for k, v in match.headers.items()},
        {k: _string_match(v) for k, v in match.queryParams.items()},
        {k: _string_match(v) for k, v in match.withoutHeaders.items()},
    )


def _extends(earlier: dict[str, str], later: dict[str, str]) -> bool:
    if len(earlier) != len(later):
        return False
    return all(k in later and later[k].startswith(v) for k, v in earlier.items())


def _covers(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's overlap rule: the earlier prefix match ``a`` takes every request of ``b``."""
    if not b.prefix.startswith(a.prefix) or a.port != b.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    return (
        _extends(a.headers, b.headers)
        and _extends(a.query, b.query)
        and _extends(a.without_headers, b.without_headers)
    )


def _section(e: Entry, section: str, routes: Sequence[Any]) -> Iterator[Message]:
    unreachable, ineffective = (
        m.VIRTUAL_SERVICE_UNREACHABLE_RULE,
        m.VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
    )
    seen: dict[str, int] = {}
    empty_at = -1
    prefixes: list[tuple[_PrefixMatch, str]] = []
    for i, route in enumerate(routes):
        path = f"spec.{section}[{i}]"
        name = _rule_name(route, i)
        matches = list(route.match)
        if not matches:
            if empty_at >= 0:
                yield e.message(
                    unreachable, name, "only the last rule can have no matches", path=path
                )
            empty_at = i
            continue
        duplicates = 0
        for j, match in enumerate(matches):
            if empty_at >= 0:
                yield e.message(
                    unreachable,
                    name,
                    "route without matches defined before",
                    path=f"{path}.match[{j}]",
                )
                continue
            key = _canonical(match)
            if key in seen:
                dup = seen[key]
                duplicates += 1
                yield e.message(
                    ineffective,
                    name,
                    _match_name(match, j),
                    _rule_name(routes[dup], dup),
                    path=f"{path}.match[{j}]",
                )
                continue
            seen[key] = i
            if isinstance(route, HTTPRoute) and isinstance(match, HTTPMatchRequest):
                pm = _prefix_match(route, i, match, j)
                if pm is not None:
                    prefixes.append((pm, f"{path}.match[{j}]"))
        if duplicates == len(matches):
            yield e.message(unreachable, name, "all matches used by prior rules", path=path)
    for a_index, (a, _) in enumerate(prefixes):
        for b, b_path in prefixes[a_index + 1 :]:
            if b.prefix == a.prefix or not _covers(a, b):
                continue
            yield e.message(
                ineffective,
                b.rule,
                f"{b.match} of prefix {b.prefix}",
                f"{a.match} of prefix {a.prefix} on {a.rule}",
                path=b_path,
            )


def analyze_unreachable_rules(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0130 and IST0131 for the ``http``, ``tcp`` and ``tls`` rules of every
    VirtualService."""
    for e, vs in ctx.of_kind("VirtualService", VirtualService):
        yield from _section(e, "http", vs.spec.http)
        yield from _section(e, "tcp", vs.spec.tcp)
        yield from _section(e, "tls", vs.spec.tls)
