"""IST0130 / IST0131: HTTP rules and matches that can never be used."""

from __future__ import annotations

from pilotfish.config.analyze.matches import analyze_unreachable_rules
from tests.unit.config.analyze._util import codes, run, texts


def vs(http: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
{http}
"""


ROUTE = "    route: [{destination: {host: reviews}}]"


def test_ordered_rules_with_catch_all_last_are_clean() -> None:
    http = f"""
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
{ROUTE}
  - match: [{{uri: {{prefix: /api}}}}]
{ROUTE}
  - name: default
{ROUTE}
"""
    assert run(analyze_unreachable_rules, vs(http)) == []


def test_rule_after_a_rule_without_match_is_unreachable() -> None:
    http = f"""
  - name: everything
{ROUTE}
  - match: [{{uri: {{prefix: /api}}}}]
{ROUTE}
"""
    msgs = run(analyze_unreachable_rules, vs(http))
    assert codes(msgs) == ["IST0130"]
    assert texts(msgs) == [
        "VirtualService rule #1 not used (route without matches defined before)."
    ]
    assert msgs[0].path == "spec.http[1].match[0]"


def test_second_rule_without_match_is_unreachable() -> None:
    http = f"""
  - name: everything
{ROUTE}
  - name: again
{ROUTE}
"""
    msgs = run(analyze_unreachable_rules, vs(http))
    assert texts(msgs) == [
        'VirtualService rule "again" not used (only the last rule can have no matches).'
    ]


def test_prefix_match_covered_by_a_shorter_prefix_is_ist0131() -> None:
    http = f"""
  - match: [{{uri: {{prefix: /}}}}]
{ROUTE}
  - name: api
    match: [{{uri: {{prefix: /api}}}}]
{ROUTE}
"""
    msgs = run(analyze_unreachable_rules, vs(http))
    assert codes(msgs) == ["IST0131"]
    assert msgs[0].text == (
        'VirtualService rule "api" match #0 of prefix /api is not used '
        "(duplicate/overlapping match in rule #0 of prefix / on #0)."
    )
    assert msgs[0].path == "spec.http[1].match[0]"


def test_prefix_match_with_another_method_is_not_covered() -> None:
    http = f"""
  - match: [{{uri: {{prefix: /}}, method: {{exact: GET}}}}]
{ROUTE}
  - match: [{{uri: {{prefix: /api}}, method: {{exact: POST}}}}]
{ROUTE}
"""
    assert run(analyze_unreachable_rules, vs(http)) == []
    same = http.replace("POST", "GET")
    assert codes(run(analyze_unreachable_rules, vs(same))) == ["IST0131"]
    # without a method Istio reads GET, so a GET match of a shorter prefix covers it
    bare = http.replace(", method: {exact: POST}", "")
    assert codes(run(analyze_unreachable_rules, vs(bare))) == ["IST0131"]


def test_duplicate_match_is_ist0131_and_fully_duplicated_rule_ist0130() -> None:
    http = f"""
  - match: [{{uri: {{exact: /a}}}}]
{ROUTE}
  - match: [{{uri: {{exact: /a}}, name: again}}]
{ROUTE}
"""
    msgs = run(analyze_unreachable_rules, vs(http))
    assert sorted(codes(msgs)) == ["IST0130", "IST0131"]
    ineffective = next(m for m in msgs if m.code == "IST0131")
    assert ineffective.text == (
        'VirtualService rule #1 match "again" is not used (duplicate/overlapping match in rule #0).'
    )
    assert ineffective.path == "spec.http[1].match[0]"


def test_partly_duplicated_rule_is_only_ist0131() -> None:
    http = f"""
  - match: [{{uri: {{exact: /a}}}}]
{ROUTE}
  - match: [{{uri: {{exact: /a}}}}, {{uri: {{exact: /b}}}}]
{ROUTE}
"""
    assert codes(run(analyze_unreachable_rules, vs(http))) == ["IST0131"]
