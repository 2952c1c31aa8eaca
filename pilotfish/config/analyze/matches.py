"""HTTP rules of a VirtualService that can never be used (IST0130) and matches that repeat an
earlier one (IST0131).

Envoy tries routes in order and takes the first that matches, so:

- a rule after a catch-all rule is never used: IST0130 ``route without matches defined
  before`` (the catch-all has no ``match``) or ``catch-all match defined before`` (a match with
  no condition, or only ``uri: {prefix: /}``);
- a match equal to a match of an earlier rule is never used: IST0131; when every match of a
  rule is such a duplicate, the rule itself is unused: IST0130 ``all matches used by prior
  rules``.

Rules and matches are named as istioctl names them: ``"name"`` when they have one, else
``#index``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from pilotfish.api.virtualservice import HTTPMatchRequest, HTTPRoute, VirtualService
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext, Entry
from pilotfish.config.analyze.messages import Message

__all__ = ["analyze_unreachable_rules"]


def _rule_name(route: HTTPRoute, index: int) -> str:
    return f'"{route.name}"' if route.name else f"#{index}"


def _match_name(match: HTTPMatchRequest, index: int) -> str:
    return f'"{match.name}"' if match.name else f"#{index}"


def _canonical(match: HTTPMatchRequest) -> str:
    """The match's conditions as comparable JSON (its name is not a condition)."""
    body = match.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    body.pop("name", None)
    return json.dumps(body, sort_keys=True)


_CATCH_ALL = {"{}", json.dumps({"uri": {"prefix": "/"}}, sort_keys=True)}


def _rules(e: Entry, http: list[HTTPRoute]) -> Iterator[Message]:
    seen: dict[str, int] = {}
    catch_all: tuple[int, bool] | None = None  # (rule index, rule had no match at all)
    for i, route in enumerate(http):
        path = f"spec.http[{i}]"
        if catch_all is not None:
            before, no_match = catch_all
            reason = (
                "route without matches defined before"
                if no_match
                else f"catch-all match defined before in rule {_rule_name(http[before], before)}"
            )
            yield e.message(
                m.VIRTUAL_SERVICE_UNREACHABLE_RULE, _rule_name(route, i), reason, path=path
            )
            continue
        if not route.match:
            catch_all = (i, True)
            continue
        duplicates = 0
        for j, match in enumerate(route.match):
            key = _canonical(match)
            if key in seen:
                dup = seen[key]
                duplicates += 1
                yield e.message(
                    m.VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                    _rule_name(route, i),
                    _match_name(match, j),
                    _rule_name(http[dup], dup),
                    path=f"{path}.match[{j}]",
                )
                continue
            seen[key] = i
            if key in _CATCH_ALL:
                catch_all = (i, False)
        if duplicates == len(route.match):
            yield e.message(
                m.VIRTUAL_SERVICE_UNREACHABLE_RULE,
                _rule_name(route, i),
                "all matches used by prior rules",
                path=path,
            )


def analyze_unreachable_rules(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0130 and IST0131 for the ``http`` rules of every VirtualService."""
    for e, vs in ctx.of_kind("VirtualService", VirtualService):
        yield from _rules(e, vs.spec.http)
