"""IstioOperator's mesh config and what Telemetry may name: checked as Istio checks them."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.api.meshconfig import effective_mesh_config, mesh_config_from_bodies
from pilotfish.api.telemetry import Telemetry
from pilotfish.config.validation import validate
from pilotfish.config.validation.meshconfig import telemetry_provider_errors
from pilotfish.errors import ValidationError


def operator(mesh: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "install.istio.io/v1alpha1",
        "kind": "IstioOperator",
        "spec": {"meshConfig": mesh, **spec},
    }


def telemetry(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "telemetry.istio.io/v1",
        "kind": "Telemetry",
        "metadata": {"name": "t", "namespace": "istio-system"},
        "spec": spec,
    }


def test_the_tutorials_operator_applies_as_written_and_fields_not_applied_are_named() -> None:
    v = validate(operator({"enableTracing": True, "enableAutoMtls": True}, profile="demo"))
    assert v.body["metadata"] == {"name": "installed-state", "namespace": "istio-system"}
    warned = {w.path: w.reason for w in v.warnings}
    assert warned["spec.meshConfig.enableAutoMtls"] == "accepted but not applied by Pilotfish yet"
    assert "only through `pilotfish install -f`" in warned["spec.profile"]


@pytest.mark.parametrize(
    ("mesh", "path", "reason"),
    [
        ({"defaultProviders": {"tracing": ["jaeger"]}}, "defaultProviders.tracing[0]",
         'provider "jaeger" is not defined'),
        ({"defaultProviders": {"tracing": ["envoy"]}}, "defaultProviders.tracing[0]",
         "not one for tracing"),
        ({"extensionProviders": [{"name": "z", "zipkin": {"service": "z", "port": 0}}]},
         "extensionProviders[0].zipkin", "service and port"),
        ({"extensionProviders": [{"name": "a", "prometheus": {}}, {"name": "a", "prometheus": {}}]},
         "extensionProviders[1].name", 'duplicate extension provider name "a"'),
        ({"defaultConfig": {"tracing": {"sampling": 101}}}, "defaultConfig.tracing.sampling",
         "range"),
        ({"accessLogEncoding": "XML"}, "accessLogEncoding", "TEXT"),
    ],
)  # fmt: skip
def test_bad_mesh_config_is_refused_with_the_field(
    mesh: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as err:
        validate(operator(mesh))
    found = {e.path: e.reason for e in err.value.errors}
    assert reason in found[f"spec.meshConfig.{path}"], found


def test_bad_cel_in_telemetry_is_refused_with_the_field() -> None:
    bad = telemetry(
        {
            "accessLogging": [{"providers": [{"name": "envoy"}],
                               "filter": {"expression": "response.code >= "}}],
            "metrics": [{"overrides": [{"tagOverrides": {"x": {"value": "request.headers["}}}]}],
        }
    )  # fmt: skip
    with pytest.raises(ValidationError) as err:
        validate(bad)
    found = {e.path: e.reason for e in err.value.errors}
    assert found["spec.accessLogging[0].filter.expression"].startswith(
        "invalid CEL expression 'response.code >= ': syntax error at column"
    )
    assert "invalid CEL expression" in found["spec.metrics[0].overrides[0].tagOverrides[x].value"]


def test_telemetry_may_only_name_providers_the_mesh_defines() -> None:
    t = Telemetry.model_validate(
        telemetry(
            {
                "tracing": [{"providers": [{"name": "otel"}]}],
                "accessLogging": [{"providers": [{"name": "envoy"}]}],
                "metrics": [{"providers": [{"name": "zipkin"}]}],
            }
        )
    )
    errors = {e.path: e.reason for e in telemetry_provider_errors(t, effective_mesh_config([]))}
    assert 'provider "otel" is not defined' in errors["spec.tracing[0].providers[0].name"]
    assert "not one for metrics" in errors["spec.metrics[0].providers[0].name"]
    assert "spec.accessLogging[0].providers[0].name" not in errors
    mesh = effective_mesh_config(
        [
            {
                "extensionProviders": [
                    {"name": "otel", "opentelemetry": {"service": "c", "port": 4317}}
                ]
            }
        ]
    )
    assert "spec.tracing[0].providers[0].name" not in {
        e.path for e in telemetry_provider_errors(t, mesh)
    }


def test_operators_overlay_istios_defaults_in_name_order() -> None:
    mesh = mesh_config_from_bodies(
        [
            {"metadata": {"name": "b", "namespace": "istio-system"},
             "spec": {"meshConfig": {"defaultConfig": {"tracing": {"sampling": 100}}}}},
            {"metadata": {"name": "a", "namespace": "istio-system"},
             "spec": {"meshConfig": {"accessLogFile": "/dev/stdout",
                                     "defaultConfig": {"tracing": {"sampling": 5}}}}},
        ]
    )  # fmt: skip
    assert mesh.accessLogFile == "/dev/stdout" and mesh.sampling == 100
    assert effective_mesh_config([]).sampling == 1.0  # Istio's default
    assert effective_mesh_config([]).defaultProviders.metrics == ["prometheus"]
