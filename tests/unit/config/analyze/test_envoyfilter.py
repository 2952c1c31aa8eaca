"""EnvoyFilter analyzers: relative patches without a priority (IST0151, IST0155)."""

from __future__ import annotations

from pilotfish.config.analyze.envoyfilter import analyze_relative_operations
from tests.unit.config.analyze._util import codes, run


def ef(operation: str, extra: str = "", priority: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: lua, namespace: default}}
spec:
  {priority}
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      {extra}
      listener:
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter: {{name: envoy.filters.http.router}}
    patch:
      operation: {operation}
      value:
        name: envoy.filters.http.buffer
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
          max_request_bytes: 1024
"""


def test_relative_operation_without_priority_is_ist0151() -> None:
    msgs = run(analyze_relative_operations, ef("INSERT_BEFORE"))
    assert codes(msgs) == ["IST0151"]
    assert msgs[0].path == "spec.configPatches[0].patch.operation"


def test_with_proxy_version_it_is_ist0155() -> None:
    msgs = run(analyze_relative_operations, ef("REPLACE", "proxy: {proxyVersion: '^1\\\\.2.*'}"))
    assert codes(msgs) == ["IST0155"]


def test_priority_or_an_absolute_operation_is_clean() -> None:
    assert run(analyze_relative_operations, ef("INSERT_BEFORE", priority="priority: 10")) == []
    assert run(analyze_relative_operations, ef("INSERT_FIRST")) == []
    assert run(analyze_relative_operations, ef("ADD")) == []
