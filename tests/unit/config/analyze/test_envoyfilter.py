"""EnvoyFilter analyzers: relative patches without a priority (IST0151, IST0155), operations
the applyTo ignores (IST0152-IST0154)."""

from __future__ import annotations

import textwrap

from pilotfish.config.analyze import analyze
from pilotfish.config.analyze.envoyfilter import (
    analyze_relative_operations,
    analyze_unsupported_operations,
)
from pilotfish.config.analyze.lines import field_line
from tests.unit.config.analyze._util import codes, inputs, run


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


def patch(apply_to: str, operation: str, match: str, value: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {{name: p-{apply_to.lower().replace("_", "-")}-{operation.lower()}, namespace: default}}
spec:
  priority: 10
  configPatches:
  - applyTo: {apply_to}
    match:
      context: SIDECAR_OUTBOUND
      {match}
    patch:
      operation: {operation}
      {value}
"""


ROUTE_CONFIG = "routeConfiguration: {vhost: {name: 'reviews:9080'}}"
CLUSTER = "cluster: {service: reviews.default.svc.cluster.local}"
CLUSTER_VALUE = "value: {connect_timeout: 2s}"


def test_operations_the_apply_to_ignores_are_ist0152_to_ist0154_at_the_operation() -> None:
    msgs = run(
        analyze_unsupported_operations,
        patch("CLUSTER", "REPLACE", CLUSTER, CLUSTER_VALUE),
        patch("ROUTE_CONFIGURATION", "ADD", ROUTE_CONFIG, "value: {name: x}"),
        patch("ROUTE_CONFIGURATION", "REMOVE", ROUTE_CONFIG),
    )
    assert codes(msgs) == ["IST0152", "IST0153", "IST0154"]
    assert msgs[0].text == "The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER."
    assert msgs[1].text == (
        "The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or "
        "HTTP_ROUTE."
    )
    assert {msg.path for msg in msgs} == {"spec.configPatches[0].patch.operation"}
    # a file: the line of its operation
    text = textwrap.dedent(patch("CLUSTER", "REPLACE", CLUSTER, CLUSTER_VALUE))
    assert field_line(text, 0, msgs[0].path) == 13


def test_operations_pilotfish_applies_are_clean() -> None:
    # REPLACE on the filters, ADD/REMOVE on routes and clusters: each is applied.
    http_filter = (
        "listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager,"
        " subFilter: {name: envoy.filters.http.router}}}}"
    )
    router = (
        "value: {name: envoy.filters.http.router, typed_config: {'@type': "
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}"
    )
    assert (
        run(
            analyze_unsupported_operations,
            patch("HTTP_FILTER", "REPLACE", http_filter, router),
            patch("HTTP_ROUTE", "REMOVE", ROUTE_CONFIG),
            patch("CLUSTER", "REMOVE", CLUSTER),
            patch(
                "ROUTE_CONFIGURATION", "MERGE", ROUTE_CONFIG, "value: {validate_clusters: false}"
            ),
        )
        == []
    )


def test_the_pipeline_reports_the_schema_error_and_the_code() -> None:
    found = analyze(inputs(patch("CLUSTER", "REPLACE", CLUSTER, CLUSTER_VALUE)), namespace=None)
    assert {"IST0106", "IST0152"} <= {msg.code for msg in found}
