"""EnvoyFilter analyzers: patches whose effect depends on what other filters did first.

- IST0151: a filter without ``priority`` whose patch is relative (MERGE, REMOVE,
  INSERT_BEFORE, INSERT_AFTER, REPLACE): it acts on what is there when it runs, which other
  EnvoyFilters may change. ADD and INSERT_FIRST are not relative.
- IST0155: the same with ``match.proxy.proxyVersion``, which also changes what it applies to
  across upgrades (reported instead of IST0151).

- IST0152 to IST0154: a REPLACE, ADD or REMOVE patch on an ``applyTo`` that does not support
  it, by the one table of supported operations validation uses (``OPERATIONS``). Validation
  refuses such a filter at apply (so live config never has one); a file gets IST0106 and this
  code. Where Pilotfish applies a patch Istio's analyzer calls ignored (REPLACE on
  LISTENER_FILTER, ADD and REMOVE on HTTP_ROUTE: Istio's patching code applies them too), it
  reports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from pilotfish.api.networking import EnvoyFilter
from pilotfish.config.analyze import messages as m
from pilotfish.config.analyze.context import AnalysisContext
from pilotfish.config.analyze.messages import Message
from pilotfish.config.validation.envoyfilter import OPERATIONS

__all__ = ["analyze_relative_operations", "analyze_unsupported_operations"]

#: The operation and the message of the patches Istio names by code when ``applyTo`` ignores
#: them (other unsupported combinations have no code of their own: IST0106 only).
_IGNORED = {
    "REPLACE": m.ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY,
    "ADD": m.ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY,
    "REMOVE": m.ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY,
}

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


def analyze_unsupported_operations(ctx: AnalysisContext) -> Iterator[Message]:
    """IST0152 (REPLACE), IST0153 (ADD) and IST0154 (REMOVE) on an ``applyTo`` that does not
    take the operation, at the patch's ``operation`` line."""
    for e, ef in ctx.of_kind("EnvoyFilter", EnvoyFilter):
        for i, cp in enumerate(ef.spec.configPatches):
            op = cp.patch.operation if cp.patch is not None else None
            supported = OPERATIONS.get(cp.applyTo or "")
            if op not in _IGNORED or supported is None or op in supported:
                continue
            yield e.message(_IGNORED[op], path=f"spec.configPatches[{i}].patch.operation")
