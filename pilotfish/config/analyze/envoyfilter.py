"""EnvoyFilter analyzers: patches whose effect depends on what other filters did first.

- IST0151: a filter without ``priority`` whose patch is relative (MERGE, REMOVE,
  INSERT_BEFORE, INSERT_AFTER, REPLACE): it acts on what is there when it runs, which other
  EnvoyFilters may change. ADD and INSERT_FIRST are not relative.
- IST0155: the same with ``match.proxy.proxyVersion``, which also changes what it applies to
  across upgrades (reported instead of IST0151).

Operations an ``applyTo`` does not support (Istio's IST0152 to IST0154) are refused by
validation, so they never reach the analyzers.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.networking import EnvoyFilter
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext
from pilotfish.config.analyze.messages import Message

__all__ = ["analyze_relative_operations"]

RELATIVE = frozenset(
    {"MERGE", "MERGE_AND_REPLACE_LIST", "REMOVE", "INSERT_BEFORE", "INSERT_AFTER", "REPLACE"}
)


def analyze_relative_operations(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0151 and IST0155, once per patch."""
    for e, ef in ctx.of_kind("EnvoyFilter", EnvoyFilter):
        if ef.spec.priority:
            continue
        for i, cp in enumerate(ef.spec.configPatches):
            op = cp.patch.operation if cp.patch is not None else None
            if op not in RELATIVE:
                continue
            proxy = cp.match.proxy if cp.match is not None else None
            if proxy is not None and proxy.proxyVersion:
                yield e.message(
                    m.ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION,
                    path=f"spec.configPatches[{i}].patch.operation",
                )
            else:
                yield e.message(
                    m.ENVOY_FILTER_USES_RELATIVE_OPERATION,
                    path=f"spec.configPatches[{i}].patch.operation",
                )
