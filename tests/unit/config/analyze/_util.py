"""Helpers for analyzer tests: YAML in, context or messages out."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable

from pilotfish.config.analyze import (
    AnalysisContext,
    AnalysisSettings,
    Input,
    Message,
    build_context,
)
from pilotfish.config.loader import parse_yaml

Analyzer = Callable[[AnalysisContext], Iterable[Message]]

SERVICES = """
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 10.0.0.1, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2, namespace: default}
spec: {address: 10.0.0.2, labels: {app: reviews, version: v2}}
"""


def inputs(*texts: str, file: str = "test.yaml") -> list[Input]:
    out: list[Input] = []
    for text in texts:
        out.extend(Input(d.body, d.source) for d in parse_yaml(textwrap.dedent(text), file))
    return out


def context(*texts: str, settings: AnalysisSettings | None = None) -> AnalysisContext:
    ctx, _ = build_context(inputs(*texts), settings)
    return ctx


def run(analyzer: Analyzer, *texts: str, settings: AnalysisSettings | None = None) -> list[Message]:
    return list(analyzer(context(*texts, settings=settings)))


def codes(messages: Iterable[Message]) -> list[str]:
    return [m.code for m in messages]


def texts(messages: Iterable[Message]) -> list[str]:
    return [m.text for m in messages]
