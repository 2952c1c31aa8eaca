"""The context (schema messages, later inputs replacing earlier ones) and the whole run
(scope, ordering, deduplication, a failing analyzer)."""

from __future__ import annotations

from pilotfish.config.analyze import (
    ANALYZERS,
    CATALOGUE,
    Analyzer,
    Input,
    Level,
    analyze,
    build_context,
)
from pilotfish.config.loader import parse_yaml
from tests.unit.config.analyze._util import SERVICES, codes, inputs

BAD_WEIGHT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
      weight: -10
"""


def test_invalid_resource_is_ist0106_with_field_path_and_origin() -> None:
    ctx, schema = build_context(inputs(SERVICES, BAD_WEIGHT))
    assert codes(schema) == ["IST0106"]
    assert schema[0].path == "spec.http[0].route[0].weight"
    assert schema[0].text.startswith("Schema validation error: spec.http[0].route[0].weight")
    assert schema[0].origin is not None and schema[0].origin.file == "test.yaml"
    # the typed model is kept so cross-resource analyzers still see it
    assert [e.name for e in ctx.by_kind["VirtualService"]] == ["broken"]


def test_unknown_kind_is_ist0106_and_not_in_the_context() -> None:
    text = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"
    ctx, schema = build_context(inputs(text))
    assert codes(schema) == ["IST0106"] and "Widget" in schema[0].text
    assert ctx.entries == []


def test_later_input_replaces_the_live_resource_with_the_same_key() -> None:
    live = [Input(d.body) for d in parse_yaml(BAD_WEIGHT, "live")]
    fixed = BAD_WEIGHT.replace("weight: -10", "weight: 100")
    ctx, schema = build_context([*live, *inputs(fixed, file="fix.yaml")])
    assert schema == []
    (entry,) = ctx.by_kind["VirtualService"]
    assert entry.origin is not None and entry.origin.file == "fix.yaml"


def vs_in(namespace: str, subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: r, namespace: {namespace}}}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http:
  - route:
    - destination: {{host: reviews.default.svc.cluster.local, subset: {subset}}}
"""


def test_scope_keeps_the_namespace_and_file_resources() -> None:
    live = [Input(d.body) for d in parse_yaml(SERVICES + "---" + vs_in("other", "v9"), "x")]
    assert analyze(live, namespace="default") == []
    assert codes(analyze(live, namespace="other")) == ["IST0101"]
    assert codes(analyze(live, namespace=None)) == ["IST0101"]
    from_file = inputs(vs_in("other", "v9"))
    assert codes(analyze([*live[:5], *from_file], namespace="default")) == ["IST0101"]


def test_messages_are_sorted_errors_first_and_deduplicated() -> None:
    text = SERVICES.replace(
        "name: http, port: 9080}]\n---\napiVersion: v1",
        "name: web, port: 9080}]\n---\napiVersion: v1",
        1,
    )
    msgs = analyze(inputs(text, BAD_WEIGHT))
    levels = [m.level for m in msgs]
    assert levels == sorted(levels, reverse=True)
    assert Level.INFO in levels and Level.ERROR in levels
    assert len({(m.code, m.resource, m.path, m.text) for m in msgs}) == len(msgs)


def test_a_failing_analyzer_reports_ist0001_and_the_others_still_run() -> None:
    def boom(ctx: object) -> list[object]:
        raise RuntimeError("boom")

    broken = Analyzer("test.Broken", "fails", ("IST0001",), boom)  # type: ignore[arg-type]
    msgs = analyze(inputs(SERVICES, vs_in("default", "v9")), analyzers=[broken, *ANALYZERS])
    assert sorted(codes(msgs)) == ["IST0001", "IST0101"]


def test_every_analyzer_code_is_in_the_catalogue() -> None:
    assert {c for a in ANALYZERS for c in a.codes} <= set(CATALOGUE)
    assert Level.parse("warn") is Level.WARNING and Level.parse("Error") is Level.ERROR
