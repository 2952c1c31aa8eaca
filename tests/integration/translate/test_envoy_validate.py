"""Every generated resource set loads in the real Envoy (``envoy --mode validate``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pilotfish.api.node import NodeInfo
from pilotfish.model import MeshSettings
from pilotfish.translate import CLUSTER_TYPE, LISTENER_TYPE, ROUTE_TYPE, generate
from tests.integration.translate.static_envoy import validate
from tests.unit.translate.fixtures import (
    BOOKINFO_CORE,
    BOOKINFO_NETWORKING,
    FEATURES,
    GATEWAYS,
    bookinfo_push,
    from_yaml,
    push_for,
    router_node,
    sidecar_node,
)
from tests.unit.translate.test_extauthz import GRPC as EXT_AUTHZ_GRPC
from tests.unit.translate.test_extauthz import HTTP as EXT_AUTHZ_HTTP
from tests.unit.translate.test_extauthz import POLICIES as EXT_AUTHZ_POLICIES
from tests.unit.translate.test_extauthz import SERVICES
from tests.unit.translate.test_extauthz import mesh as ext_authz_mesh

pytestmark = pytest.mark.integration

REVIEWS_V2 = sidecar_node(app="reviews", ip="10.1.0.13", labels={"app": "reviews", "version": "v2"})

EXT_AUTHZ = [
    SERVICES[1],
    *[
        {**p, "spec": {**p["spec"], "selector": {"matchLabels": {"app": "reviews"}}}}
        for p in EXT_AUTHZ_POLICIES
    ],
]

CASES: dict[str, tuple[list[dict], NodeInfo]] = {
    "ext-authz-http": (ext_authz_mesh(EXT_AUTHZ_HTTP) + EXT_AUTHZ, REVIEWS_V2),
    "ext-authz-grpc": (ext_authz_mesh(EXT_AUTHZ_GRPC) + EXT_AUTHZ, REVIEWS_V2),
    "bookinfo-productpage": ([], sidecar_node()),
    "bookinfo-reviews": ([], REVIEWS_V2),
    "bookinfo-gateway": ([], router_node()),
    "features-reviews-v2": (FEATURES, REVIEWS_V2),
    "features-explicit": (
        FEATURES,
        sidecar_node(
            ip="127.0.0.1",
            interception_mode="NONE",
            outbound_port=15101,
            inbound_ports={9080: 15102},
        ),
    ),
    "gateways": (FEATURES + GATEWAYS, router_node(gateway_ports={80: 8080, 8081: 8081})),
    # A Sidecar: egress scoped by port and namespace, a bound (captureMode NONE) egress
    # listener, REGISTRY_ONLY, and an ingress defaultEndpoint to another app port.
    "sidecar-scoped": (
        [
            {
                "kind": "Sidecar",
                "metadata": {"name": "reviews", "namespace": "default"},
                "spec": {
                    "workloadSelector": {"labels": {"app": "reviews"}},
                    "ingress": [
                        {
                            "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                            "defaultEndpoint": "0.0.0.0:8080",
                        }
                    ],
                    "egress": [
                        {
                            "port": {"number": 9080, "protocol": "HTTP", "name": "http"},
                            "captureMode": "NONE",
                            "hosts": ["./ratings.default.svc.cluster.local"],
                        },
                        {"hosts": ["./*", "istio-system/*"]},
                    ],
                    "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                },
            }
        ],
        REVIEWS_V2,
    ),
}


def test_registry_only_and_explicit_bookinfo_load_in_envoy(tmp_path: Path) -> None:
    push = push_for(
        BOOKINFO_CORE + BOOKINFO_NETWORKING, MeshSettings(outbound_traffic_policy="REGISTRY_ONLY")
    )
    validate(generate(sidecar_node(), push), tmp_path, "registry-only")
    explicit = sidecar_node(
        ip="127.0.0.1", interception_mode="NONE", outbound_port=15201, inbound_ports={9080: 15202}
    )
    validate(generate(explicit, push), tmp_path, "explicit")


@pytest.mark.parametrize("case", sorted(CASES))
def test_generated_config_loads_in_envoy(case: str, tmp_path: Path) -> None:
    extra, node = CASES[case]
    resources = generate(node, bookinfo_push(extra))
    assert resources[LISTENER_TYPE] and resources[CLUSTER_TYPE] and resources[ROUTE_TYPE]
    validate(resources, tmp_path, case)


def test_validation_catches_a_broken_config(tmp_path: Path) -> None:
    """The check can fail: an empty weighted_clusters is rejected by Envoy."""
    resources = generate(sidecar_node(), bookinfo_push())
    rc = resources[ROUTE_TYPE]["9080"]
    route = rc.virtual_hosts[0].routes[0]
    route.route.ClearField("cluster")
    route.route.weighted_clusters.SetInParent()
    with pytest.raises(AssertionError, match="envoy rejected"):
        validate(resources, tmp_path)


def test_telemetry_of_the_demo_profile_loads_in_envoy(tmp_path: Path) -> None:
    """Access logs, 100% tracing to the built-in collector, a tag override and a filter."""
    from pilotfish.config.addons import zipkin_service_entry
    from tests.unit.translate.fixtures import BOOKINFO_CORE, router_node

    operator = {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "metadata": {"name": "demo", "namespace": "istio-system"},
        "spec": {"meshConfig": {"accessLogFile": "/dev/stdout", "accessLogEncoding": "JSON",
                                "defaultConfig": {"tracing": {"sampling": 100}}}},
    }  # fmt: skip
    telemetry = {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "t", "namespace": "default"},
        "spec": {
            "accessLogging": [{"providers": [{"name": "envoy"}],
                               "filter": {"expression": "response.code >= 400"}}],
            "metrics": [{"overrides": [{"match": {"metric": "REQUEST_COUNT"}, "tagOverrides": {
                "response_code": {"value": "string(response.code)"},
                "request_protocol": {"operation": "REMOVE"}}}]}],
        },
    }  # fmt: skip
    push = push_for([*BOOKINFO_CORE, zipkin_service_entry("10.244.0.1"), operator, telemetry])
    validate(generate(sidecar_node(), push), tmp_path, "telemetry-sidecar")
    validate(generate(router_node(), push), tmp_path, "telemetry-gateway")


NEWER_FIELDS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    retryBudget: {percent: 25, minRetryConcurrency: 4}
    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {duration: 30s, minimumPercent: 20, aggression: 2}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /moved}, statPrefix: ratings-moved}]
    redirect: {authority: elsewhere.example, derivePort: FROM_REQUEST_PORT}
  - corsPolicy: {allowOrigins: [{exact: "https://ok.example"}], unmatchedPreflights: IGNORE}
    route: [{destination: {host: ratings}}]
"""


def test_retry_budget_slow_start_and_route_fields_load_in_envoy(tmp_path: Path) -> None:
    """DestinationRule retryBudget and warmup, VirtualService statPrefix, derivePort and
    unmatchedPreflights as Istio translates them: the fields are in the config and Envoy
    takes it."""
    resources = generate(REVIEWS_V2, push_for(BOOKINFO_CORE + from_yaml(NEWER_FIELDS)))
    cluster = resources[CLUSTER_TYPE]["outbound|9080||ratings.default.svc.cluster.local"]
    budget = cluster.circuit_breakers.thresholds[0].retry_budget
    assert (budget.budget_percent.value, budget.min_retry_concurrency.value) == (25.0, 4)
    slow = cluster.round_robin_lb_config.slow_start_config
    assert (slow.aggression.default_value, slow.min_weight_percent.value) == (2.0, 20.0)
    vhost = next(
        v
        for v in resources[ROUTE_TYPE]["9080"].virtual_hosts
        if "ratings.default.svc.cluster.local" in v.domains
    )
    moved = vhost.routes[0]
    assert moved.stat_prefix == "ratings-moved" and moved.redirect.port_redirect == 9080
    validate(resources, tmp_path, "newer-fields")
