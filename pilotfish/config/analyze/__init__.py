"""Cross-resource analysis of Istio configuration with Istio's analyzer codes (``IST0101``...).

Per-resource validation (:mod:`pilotfish.config.validation`) checks one resource at a time;
analysis looks across them: a VirtualService naming a subset no DestinationRule defines, a
Gateway selecting no workload, two Gateways claiming the same port and host. Findings use
istioctl's codes, levels and wording, so ``pilotfish analyze`` reads like ``istioctl analyze``.

Public surface::

    analyze(inputs, namespace=None, settings=None) -> list[Message]   # the whole pipeline
    build_context(inputs, settings) -> (AnalysisContext, schema messages)
    run_analyzers(ctx) -> list[Message]
    ANALYZERS, CATALOGUE, Level, Message, Input, AnalysisSettings, field_line

Each analyzer is a pure function ``AnalysisContext -> Iterable[Message]`` in a module of its
group (virtualservice, matches, destinationrule, gateway, security, workloads).
"""

from pilotfish.config.analyze.context import (
    AnalysisContext,
    AnalysisSettings,
    Entry,
    Input,
    ServiceHost,
    Workload,
    build_context,
)
from pilotfish.config.analyze.lines import field_line
from pilotfish.config.analyze.messages import (
    CATALOGUE,
    Level,
    Message,
    MessageType,
    ResourceKey,
    documentation_url,
)
from pilotfish.config.analyze.run import (
    ANALYZERS,
    SUPPRESS_ANNOTATION,
    Analyzer,
    Suppression,
    analyze,
    in_scope,
    run_analyzers,
    suppress,
)

__all__ = [
    "ANALYZERS",
    "CATALOGUE",
    "SUPPRESS_ANNOTATION",
    "AnalysisContext",
    "AnalysisSettings",
    "Analyzer",
    "Entry",
    "Input",
    "Level",
    "Message",
    "MessageType",
    "ResourceKey",
    "ServiceHost",
    "Suppression",
    "Workload",
    "analyze",
    "build_context",
    "documentation_url",
    "field_line",
    "in_scope",
    "run_analyzers",
    "suppress",
]
