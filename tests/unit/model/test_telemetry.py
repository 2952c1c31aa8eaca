"""The telemetry one proxy produces: mesh config defaults and Telemetry scopes, Istio's rules."""

from __future__ import annotations

from typing import Any

from pilotfish.api.meshconfig import effective_mesh_config
from pilotfish.api.telemetry import Telemetry
from pilotfish.model.telemetry import ScopedTelemetry, proxy_telemetry


def tel(ns: str, name: str, spec: dict[str, Any]) -> ScopedTelemetry:
    body = {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }
    return ScopedTelemetry(ns, name, Telemetry.model_validate(body))


MESH_LOGS = tel(
    "istio-system", "mesh-default", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}
)


def test_defaults_metrics_on_no_access_log_one_percent_zipkin() -> None:
    t = proxy_telemetry([], effective_mesh_config([]), "default", {"app": "reviews"})
    assert t.metric_modes == ("CLIENT", "SERVER") and t.access_logs == ()
    assert t.tracing is not None and t.tracing.sampling == 1.0
    assert t.tracing.provider.zipkin is not None
    assert t.tracing.provider.zipkin.service == "zipkin.istio-system"


def test_the_tutorials_mesh_wide_access_log_applies_to_every_namespace() -> None:
    mesh = effective_mesh_config([])
    t = proxy_telemetry([MESH_LOGS], mesh, "default", {})
    assert [(a.provider.name, a.mode) for a in t.access_logs] == [
        ("envoy", "CLIENT"),
        ("envoy", "SERVER"),
    ]
    assert t.access_logs[0].provider.envoyFileAccessLog is not None
    assert t.access_logs[0].provider.envoyFileAccessLog.path == "/dev/stdout"


def test_more_specific_scopes_override_and_selectors_match_labels() -> None:
    mesh = effective_mesh_config([{"accessLogFile": "/dev/stdout"}])
    off_in_ns = tel(
        "default",
        "quiet",
        {"accessLogging": [{"disabled": True, "providers": [{"name": "envoy"}]}]},
    )
    server_only = tel(
        "default",
        "reviews",
        {
            "selector": {"matchLabels": {"app": "reviews"}},
            "accessLogging": [
                {
                    "providers": [{"name": "envoy"}],
                    "match": {"mode": "SERVER"},
                    "filter": {"expression": "response.code >= 400"},
                }
            ],
        },
    )
    assert len(proxy_telemetry([], mesh, "default", {}).access_logs) == 2  # accessLogFile
    assert proxy_telemetry([off_in_ns], mesh, "default", {}).access_logs == ()
    assert len(proxy_telemetry([off_in_ns], mesh, "other", {}).access_logs) == 2
    t = proxy_telemetry([off_in_ns, server_only], mesh, "default", {"app": "reviews"})
    assert [(a.mode, a.filter) for a in t.access_logs] == [("SERVER", "response.code >= 400")]


def test_metric_tag_overrides_accumulate_and_disabling_turns_metrics_off() -> None:
    mesh = effective_mesh_config([])
    ns = tel(
        "default",
        "namespace-metrics",
        {
            "metrics": [
                {
                    "providers": [{"name": "prometheus"}],
                    "overrides": [
                        {
                            "match": {"metric": "REQUEST_COUNT"},
                            "tagOverrides": {"response_code": {"value": "string(response.code)"}},
                        }
                    ],
                }
            ]
        },
    )
    wl = tel(
        "default",
        "w",
        {
            "selector": {"matchLabels": {"app": "ratings"}},
            "metrics": [
                {
                    "overrides": [
                        {
                            "match": {"metric": "REQUEST_COUNT", "mode": "SERVER"},
                            "tagOverrides": {"request_protocol": {"operation": "REMOVE"}},
                        }
                    ]
                }
            ],
        },
    )
    t = proxy_telemetry([ns, wl], mesh, "default", {"app": "ratings"})
    server = next(o for o in t.overrides if o.mode == "SERVER")
    assert server.metric == "REQUEST_COUNT"
    assert server.tags == (
        ("request_protocol", "REMOVE", ""),
        ("response_code", "UPSERT", "string(response.code)"),
    )
    off = tel("istio-system", "off", {"metrics": [{"overrides": [{"disabled": True}]}]})
    assert proxy_telemetry([off], mesh, "default", {}).metric_modes == ()


def test_tracing_the_most_specific_sampling_wins() -> None:
    mesh = effective_mesh_config([{"defaultConfig": {"tracing": {"sampling": 100}}}])
    assert proxy_telemetry([], mesh, "default", {}).tracing.sampling == 100  # type: ignore[union-attr]
    low = tel(
        "default",
        "t",
        {
            "tracing": [
                {
                    "randomSamplingPercentage": 10,
                    "customTags": {"env": {"literal": {"value": "dev"}}},
                }
            ]
        },
    )
    t = proxy_telemetry([low], mesh, "default", {})
    assert t.tracing is not None and t.tracing.sampling == 10
    assert t.tracing.custom_tags == (("env", "literal", "dev", ""),)
    off = effective_mesh_config([{"enableTracing": False}])
    assert proxy_telemetry([], off, "default", {}).tracing is None


def test_a_target_ref_applies_to_the_ingress_gateway_only_by_its_gateway_kind() -> None:
    mesh = effective_mesh_config([])
    off = {"accessLogging": [{"disabled": True, "providers": [{"name": "envoy"}]}]}
    gateway = {"group": "gateway.networking.k8s.io", "kind": "Gateway"}
    by_gateway = tel(
        "istio-system", "gw", {"targetRefs": [gateway | {"name": "istio-ingressgateway"}], **off}
    )
    by_service = tel(
        "istio-system",
        "svc",
        {"targetRef": {"kind": "Service", "name": "istio-ingressgateway"}, **off},
    )
    logs = tel(
        "istio-system", "mesh-default", {"accessLogging": [{"providers": [{"name": "envoy"}]}]}
    )
    gw = ("istio-ingressgateway",)
    assert proxy_telemetry([logs, by_gateway], mesh, "istio-system", {}, gw).access_logs == ()
    assert len(proxy_telemetry([logs, by_service], mesh, "istio-system", {}, gw).access_logs) == 2
    assert len(proxy_telemetry([logs, by_gateway], mesh, "istio-system", {}).access_logs) == 2
