"""Install profiles, ``--set`` and the components and mesh config an IstioOperator asks for."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.api.meshconfig import mesh_config_from_bodies
from pilotfish.api.profiles import (
    PROFILES,
    Components,
    SetError,
    apply_set,
    components_of,
    install_operator,
    merge_spec,
    parse_set,
    profile_operator,
)
from pilotfish.config.validation import validate


def _install(*sets: str, file_spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return install_operator(file_spec, [parse_set(s) for s in sets])


def test_each_profile_is_a_valid_istio_operator_named_installed_state() -> None:
    for name in PROFILES:
        body = profile_operator(name)
        assert body["metadata"] == {"name": "installed-state", "namespace": "istio-system"}
        assert body["spec"]["profile"] == name
        validate(body)  # raises on any error


def test_profiles_choose_components() -> None:
    assert components_of(profile_operator("default")["spec"]) == Components(
        ingress_gateway=True, egress_gateway=False, prometheus=True, trace_collector=True,
        dashboard=True,
    )  # fmt: skip
    demo = components_of(profile_operator("demo")["spec"])
    assert demo.ingress_gateway and demo.egress_gateway and demo.prometheus
    for name in ("minimal", "empty"):
        assert components_of(profile_operator(name)["spec"]).enabled() == []


def test_demo_turns_on_access_logs_and_traces_every_request_on_the_one_mesh_config() -> None:
    demo = mesh_config_from_bodies([_install("profile=demo")])
    assert demo.accessLogFile == "/dev/stdout"
    assert demo.sampling == 100.0
    default = mesh_config_from_bodies([_install()])
    assert default.accessLogFile == ""
    assert default.sampling == 1.0


def test_set_overrides_the_profile_and_mesh_config_wins_over_values() -> None:
    body = _install("profile=demo", "meshConfig.defaultConfig.tracing.sampling=25",
                    "meshConfig.accessLogEncoding=JSON")  # fmt: skip
    mesh = mesh_config_from_bodies([body])
    assert mesh.sampling == 25.0  # values.pilot.traceSampling: 100 of the demo profile loses
    assert mesh.accessLogEncoding == "JSON"
    assert mesh.accessLogFile == "/dev/stdout"


def test_set_values_keys_reach_the_mesh_config_and_the_components() -> None:
    body = _install(
        "profile=minimal",
        "values.pilot.traceSampling=10",
        "values.global.proxy.accessLogFile=/dev/stdout",
        "values.prometheus.enabled=true",
        "values.gateways.istio-ingressgateway.enabled=true",
    )
    mesh = mesh_config_from_bodies([body])
    assert (mesh.sampling, mesh.accessLogFile) == (10.0, "/dev/stdout")
    comps = components_of(body["spec"])
    assert comps.prometheus and comps.ingress_gateway and not comps.trace_collector


def test_set_components_and_addons() -> None:
    body = _install(
        "profile=default",
        "components.ingressGateways[0].enabled=false",
        "addonComponents.tracing.enabled=false",
    )
    comps = components_of(body["spec"])
    assert not comps.ingress_gateway and not comps.trace_collector and comps.prometheus


def test_file_spec_lies_between_the_profile_and_set() -> None:
    file_spec = {
        "profile": "demo",
        "meshConfig": {"accessLogEncoding": "JSON"},
        "components": {"egressGateways": [{"name": "istio-egressgateway", "enabled": False}]},
    }
    body = _install("meshConfig.accessLogFile=/tmp/x.log", file_spec=file_spec)
    spec = body["spec"]
    assert spec["profile"] == "demo"
    assert spec["meshConfig"]["accessLogEncoding"] == "JSON"
    assert spec["meshConfig"]["accessLogFile"] == "/tmp/x.log"
    assert spec["components"]["ingressGateways"] == [
        {"name": "istio-ingressgateway", "enabled": True}
    ]
    assert not components_of(spec).egress_gateway  # merged by name, not appended
    assert _install("profile=minimal", file_spec=file_spec)["spec"]["profile"] == "minimal"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("meshConfig.accessLogFiel=/dev/stdout", 'unknown field "accessLogFiel" of meshConfig'),
        ("meshConfig.defaultConfig.tracing.samplingg=1", 'unknown field "samplingg"'),
        ("values.global.hub=docker.io", "--set values.global.hub: not a values key"),
        ("hub=docker.io", 'unknown key "hub"'),
        ("profile=ambient", "unknown profile"),
        ("components.pilot.enabled=false", "control plane always runs"),
        ("components.cni.enabled=true", 'unknown key "components"'),
        ("meshConfig.accessLogFile[0]=x", "is not a list"),
    ],
)
def test_unknown_keys_are_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(SetError) as exc:
        _install(text)
    assert says in str(exc.value)


def test_parse_set_types_values_as_istioctl() -> None:
    assert parse_set("a=true") == ("a", True)
    assert parse_set("a=100") == ("a", 100)
    assert parse_set("a=0.5") == ("a", 0.5)
    assert parse_set("a=/dev/stdout") == ("a", "/dev/stdout")
    assert parse_set("a=") == ("a", "")
    assert parse_set("a=b=c") == ("a", "b=c")
    with pytest.raises(SetError):
        parse_set("novalue")


def test_set_writes_nested_and_indexed_paths() -> None:
    spec: dict[str, Any] = {}
    apply_set(spec, "meshConfig.extensionProviders[1].name", "otel")
    assert spec == {"meshConfig": {"extensionProviders": [{}, {"name": "otel"}]}}


def test_merge_spec_merges_maps_and_named_lists() -> None:
    base = {"a": {"b": 1, "c": 2}, "l": [{"name": "x", "v": 1}], "plain": [1, 2]}
    over = {"a": {"c": 3}, "l": [{"name": "y"}], "plain": [3]}
    assert merge_spec(base, over) == {
        "a": {"b": 1, "c": 3},
        "l": [{"name": "x", "v": 1}, {"name": "y"}],
        "plain": [3],
    }


def test_bad_values_are_refused_at_validation_by_field() -> None:
    from pilotfish.errors import ValidationError

    with pytest.raises(ValidationError) as exc:
        validate(_install("values.pilot.traceSampling=500"))
    assert "spec.values.pilot.traceSampling" in str(exc.value)
