"""EnvoyFilter validation: Istio's checks, values parsed into Envoy's types, what is refused
and what is warned about, each by field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.unit.config.validation._util import body, has, ok

LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
SAMPLE = Path(__file__).resolve().parents[4] / "samples/tutorials/envoy-filter-local-ratelimit.yaml"


def ef(
    apply_to: str, patch: dict[str, Any], match: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    cp: dict[str, Any] = {"applyTo": apply_to, "patch": patch}
    if match is not None:
        cp["match"] = match
    return body("EnvoyFilter", {"configPatches": [cp], **spec})


def warnings(b: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w.path, w.reason) for w in ok(b).warnings]


def test_operation_must_suit_apply_to() -> None:
    has(
        ef("ROUTE_CONFIGURATION", {"operation": "ADD", "value": {"name": "x"}}),
        "spec.configPatches[0].patch.operation",
        "operation ADD is not supported for applyTo ROUTE_CONFIGURATION",
    )
    has(
        ef("CLUSTER", {"operation": "INSERT_BEFORE", "value": {"name": "x"}}),
        "spec.configPatches[0].patch.operation",
        "not supported for applyTo CLUSTER",
    )
    ok(ef("CLUSTER", {"operation": "MERGE_AND_REPLACE_LIST", "value": {"name": "x"}}))


def test_values_parse_into_the_envoy_type_by_field() -> None:
    has(
        ef("CLUSTER", {"operation": "MERGE", "value": {"connect_timeout": "soon"}}),
        "spec.configPatches[0].patch.value",
        "not a valid envoy.config.cluster.v3.Cluster",
    )
    has(
        ef("CLUSTER", {"operation": "MERGE", "value": {"no_such_field": 1}}),
        "spec.configPatches[0].patch.value",
        "no_such_field",
    )
    has(
        ef(
            "HTTP_FILTER",
            {
                "operation": "ADD",
                "value": {"name": "x", "typed_config": {"@type": "type.googleapis.com/acme.Nope"}},
            },
        ),
        "spec.configPatches[0].patch.value.typed_config.@type",
        "referenced type unknown: type.googleapis.com/acme.Nope",
    )
    has(
        ef(
            "HTTP_FILTER",
            {
                "operation": "ADD",
                "value": {
                    "name": "x",
                    "typed_config": {
                        "@type": TYPED_STRUCT,
                        "type_url": "type.googleapis.com/acme.Nope",
                    },
                },
            },
        ),
        "spec.configPatches[0].patch.value.typed_config.type_url",
        "referenced type unknown",
    )
    has(
        ef(
            "HTTP_FILTER",
            {
                "operation": "ADD",
                "value": {
                    "name": "x",
                    "typed_config": {
                        "@type": TYPED_STRUCT,
                        "type_url": LRL,
                        "value": {"token_bucket": {"max_tokenz": 1}},
                    },
                },
            },
        ),
        "spec.configPatches[0].patch.value",
        "max_tokenz",
    )


def test_sub_filter_needs_the_http_connection_manager() -> None:
    has(
        ef(
            "NETWORK_FILTER",
            {"operation": "REMOVE"},
            {"listener": {"filterChain": {"filter": {"name": "x", "subFilter": {"name": "y"}}}}},
        ),
        "spec.configPatches[0].match.listener.filterChain.filter.subFilter",
        "subfilter match can be used with applyTo HTTP_FILTER only",
    )
    has(
        ef(
            "HTTP_FILTER",
            {"operation": "REMOVE"},
            {
                "listener": {
                    "filterChain": {
                        "filter": {
                            "name": "envoy.filters.network.tcp_proxy",
                            "subFilter": {"name": "y"},
                        }
                    }
                }
            },
        ),
        "spec.configPatches[0].match.listener.filterChain.filter.subFilter",
        "requires filter match with envoy.filters.network.http_connection_manager",
    )
    has(
        ef("HTTP_FILTER", {"operation": "REMOVE"}, {"proxy": {"proxyVersion": "("}}),
        "spec.configPatches[0].match.proxy.proxyVersion",
        "invalid regex",
    )


def test_the_tutorial_rate_limit_is_accepted_with_a_shadow_mode_warning() -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    found = warnings(doc)
    assert [p for p, _ in found] == [
        "spec.configPatches[0].patch.value.typed_config.value.filter_enforced"
    ]
    assert "shadow mode" in found[0][1] and "429" in found[0][1]
    value = doc["spec"]["configPatches"][0]["patch"]["value"]["typed_config"]["value"]
    value["filter_enforced"] = value["filter_enabled"]
    assert warnings(doc) == []
    del value["filter_enabled"], value["filter_enforced"]
    found = warnings(doc)
    assert [p for p, _ in found] == [
        "spec.configPatches[0].patch.value.typed_config.value.filter_enabled"
    ]


def test_a_match_on_a_filter_only_istio_generates_is_warned_about() -> None:
    match = {
        "listener": {
            "filterChain": {
                "filter": {
                    "name": "envoy.filters.network.http_connection_manager",
                    "subFilter": {"name": "istio.stats"},
                }
            }
        }
    }
    value = {"name": "x", "typed_config": {"@type": LRL, "stat_prefix": "x"}}
    found = warnings(ef("HTTP_FILTER", {"operation": "INSERT_BEFORE", "value": value}, match))
    paths = [p for p, _ in found]
    assert "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name" in paths


_HEADER = "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"


def test_extension_config_takes_add_with_a_name_and_a_typed_config() -> None:
    value = {"name": "add-header", "typed_config": {"@type": _HEADER}}
    assert warnings(ef("EXTENSION_CONFIG", {"operation": "ADD", "value": value})) == []
    # Istio's ECDS output takes only what EXTENSION_CONFIG patches ADD.
    for op in ("MERGE", "REPLACE", "REMOVE"):
        has(
            ef("EXTENSION_CONFIG", {"operation": op, "value": value}),
            "spec.configPatches[0].patch.operation",
            f"operation {op} is not supported for applyTo EXTENSION_CONFIG (supported: ADD)",
        )
    has(
        ef("EXTENSION_CONFIG", {"operation": "ADD", "value": {"typed_config": {"@type": _HEADER}}}),
        "spec.configPatches[0].patch.value.name",
        "needs the name HTTP filters refer to it by",
    )
    has(
        ef("EXTENSION_CONFIG", {"operation": "ADD", "value": {"name": "x"}}),
        "spec.configPatches[0].patch.value.typed_config",
        "needs typed_config",
    )
    matched = ef(
        "EXTENSION_CONFIG",
        {"operation": "ADD", "value": value},
        {"listener": {"portNumber": 9080}},
    )
    assert any(
        p == "spec.configPatches[0].match" and "has no effect with applyTo EXTENSION_CONFIG" in r
        for p, r in warnings(matched)
    )


def test_target_refs_are_checked_as_istio_and_warned_to_apply_to_no_proxy() -> None:
    gateway = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}
    patch = {"operation": "REMOVE"}
    assert (
        "spec.targetRefs",
        "not supported yet: targetRefs attach to Gateway API gateways and waypoints, which "
        "Pilotfish does not run; this EnvoyFilter applies to no Pilotfish proxy (use "
        "workloadSelector)",
    ) in warnings(ef("CLUSTER", patch, targetRefs=[gateway]))
    gateway_class = {**gateway, "kind": "GatewayClass", "name": "istio"}
    assert any(
        p == "spec.targetRefs"
        for p, _ in warnings(ef("CLUSTER", patch, targetRefs=[gateway_class]))
    )
    has(
        ef("CLUSTER", patch, targetRefs=[{"kind": "Deployment", "group": "apps", "name": "x"}]),
        "spec.targetRefs[0]",
        "targetRef must be to one of",
    )
    has(
        ef("CLUSTER", patch, targetRefs=[{**gateway, "name": ""}]),
        "spec.targetRefs[0].name",
        "must be set",
    )
    has(
        ef("CLUSTER", patch, targetRefs=[{**gateway, "namespace": "other"}]),
        "spec.targetRefs[0].namespace",
        "cross namespace referencing is not supported",
    )
    has(
        ef("CLUSTER", patch, targetRefs=[gateway], workloadSelector={"labels": {"app": "x"}}),
        "spec",
        "only one of targetRefs or workloadSelector can be set",
    )


def test_bootstrap_merges_and_warns_it_takes_effect_on_proxy_restart() -> None:
    value = {"stats_config": {"stats_tags": [{"tag_name": "t", "regex": "^x"}]}}
    assert any(
        p == "spec.configPatches[0].applyTo" and "take effect when a selected proxy starts" in r
        for p, r in warnings(ef("BOOTSTRAP", {"operation": "MERGE", "value": value}))
    )
    has(
        ef("BOOTSTRAP", {"operation": "ADD", "value": value}),
        "spec.configPatches[0].patch.operation",
        "operation ADD is not supported for applyTo BOOTSTRAP (supported: MERGE)",
    )
    has(
        ef("BOOTSTRAP", {"operation": "MERGE", "value": {"stats_configz": {}}}),
        "spec.configPatches[0].patch.value",
        "stats_configz",
    )


def test_route_configuration_gateway_is_for_gateway_contexts() -> None:
    gw = "spec.configPatches[0].match.routeConfiguration.gateway"
    remove = {"operation": "REMOVE"}
    assert warnings(ef("HTTP_ROUTE", remove, {"routeConfiguration": {"gateway": "ns/gw"}})) == []
    on_sidecar = {"context": "SIDECAR_OUTBOUND", "routeConfiguration": {"gateway": "ns/gw"}}
    assert any(
        p == gw and "has no effect" in r for p, r in warnings(ef("HTTP_ROUTE", remove, on_sidecar))
    )
    bare = {"context": "GATEWAY", "routeConfiguration": {"gateway": "gw"}}
    assert any(
        p == gw and "namespace/name" in r for p, r in warnings(ef("HTTP_ROUTE", remove, bare))
    )
