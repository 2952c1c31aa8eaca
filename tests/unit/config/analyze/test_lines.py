"""Field paths to YAML lines."""

from __future__ import annotations

from pilotfish.config.analyze.lines import field_line, split_path

TEXT = """\
apiVersion: v1
kind: Service
metadata: {name: a}
---
# second document
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        end-user: {exact: jason}
    route:
    - destination:
        host: reviews
        subset: v4
"""


def test_split_path() -> None:
    assert split_path("spec.http[0].match[1].headers[end-user]") == [
        "spec",
        "http",
        0,
        "match",
        1,
        "headers",
        "end-user",
    ]


def test_line_of_a_nested_field_in_the_second_document() -> None:
    assert field_line(TEXT, 1, "spec.http[0].route[0].destination.subset") == 19
    assert field_line(TEXT, 1, "spec.http[0].match[0].headers[end-user]") == 15
    assert field_line(TEXT, 1, "spec.hosts[0]") == 11


def test_missing_tail_gives_the_deepest_line_present_and_nothing_gives_none() -> None:
    assert field_line(TEXT, 1, "spec.http[0].route[0].destination.port.number") == 17
    assert field_line(TEXT, 1, "items[0]") is None
    assert field_line(TEXT, 7, "spec") is None
    assert field_line("a: [", 0, "a") is None
