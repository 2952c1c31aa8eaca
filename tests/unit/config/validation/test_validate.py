"""validate(): kinds, metadata, namespace normalization, schema errors, all problems at once."""

from __future__ import annotations

import copy

import pytest

from pilotfish.api.virtualservice import VirtualService
from pilotfish.config.validation import VALIDATORS, validate
from pilotfish.errors import Source, UnknownKindError, ValidationError

from ._util import body, has, ok, problems

VS_SPEC = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}


def test_every_kind_has_a_validator() -> None:
    from pilotfish.api import MODELS

    assert set(VALIDATORS) == set(MODELS)


def test_valid_resource_returns_typed_model_and_normalized_body() -> None:
    b = body("VirtualService", VS_SPEC)
    v = validate(b, default_namespace="bookinfo")
    assert v.info.kind == "VirtualService"
    assert isinstance(v.obj, VirtualService)
    assert v.obj.metadata.namespace == "bookinfo"
    assert v.body["metadata"]["namespace"] == "bookinfo"
    assert v.body["apiVersion"] == "networking.istio.io/v1"
    assert "namespace" not in b["metadata"], "the caller's body is not modified"
    v.body["spec"]["hosts"].append("x")
    assert b["spec"]["hosts"] == ["reviews"], "the normalized body is a copy"


def test_namespace_defaults() -> None:
    assert validate(body("VirtualService", VS_SPEC)).body["metadata"]["namespace"] == "default"
    b = body("VirtualService", VS_SPEC)
    b["metadata"]["namespace"] = "prod"
    assert validate(b, default_namespace="x").body["metadata"]["namespace"] == "prod"


def test_cluster_scoped_kind_drops_namespace() -> None:
    b = body("Namespace", None, name="bookinfo")
    b["metadata"]["namespace"] = "ignored"
    v = validate(b, default_namespace="x")
    assert "namespace" not in v.body["metadata"]


def test_api_version_kept_as_written() -> None:
    b = body("VirtualService", VS_SPEC)
    b["apiVersion"] = "networking.istio.io/v1alpha3"
    assert validate(b).body["apiVersion"] == "networking.istio.io/v1alpha3"


def test_unknown_kind_and_version() -> None:
    with pytest.raises(UnknownKindError):
        validate({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin"})
    with pytest.raises(UnknownKindError):
        validate({"apiVersion": "networking.istio.io/v1", "kind": "EnvoyFilter", "metadata": {}})


def test_missing_kind_and_api_version() -> None:
    assert problems({"metadata": {"name": "x"}}) == [
        ("kind", "Required value: kind is required"),
        ("apiVersion", "Required value: apiVersion is required"),
    ]


def test_missing_name() -> None:
    b = body("VirtualService", VS_SPEC)
    del b["metadata"]["name"]
    assert problems(b) == [("metadata.name", "Required value: name or generateName is required")]


@pytest.mark.parametrize("name", ["Reviews", "reviews_v1", "-reviews", "a" * 254])
def test_invalid_names(name: str) -> None:
    has(body("VirtualService", VS_SPEC, name=name), "metadata.name", "Invalid value")


def test_valid_dotted_name_but_label_rules_for_namespaces_and_gateways() -> None:
    ok(body("VirtualService", VS_SPEC, name="reviews.v1"))
    has(body("Namespace", None, name="book.info"), "metadata.name", "RFC 1123 label")
    gw = {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}
    ok(body("Gateway", gw, name="bookinfo-gateway"))
    has(body("Gateway", gw, name="bookinfo.gateway"), "metadata.name", "RFC 1123 label")


def test_invalid_namespace_and_labels() -> None:
    b = body("VirtualService", VS_SPEC)
    b["metadata"]["namespace"] = "Bad_NS"
    b["metadata"]["labels"] = {"app": "ok", "bad key!": "v", "k": "bad value!"}
    found = problems(b)
    paths = {p for p, _ in found}
    assert "metadata.namespace" in paths
    assert "metadata.labels[bad key!]" in paths
    assert "metadata.labels[k]" in paths
    assert "metadata.labels[app]" not in paths


def test_unknown_field_and_wrong_type_reported_together() -> None:
    spec = copy.deepcopy(VS_SPEC)
    spec["http"][0]["foo"] = 1
    spec["http"][0]["route"][0]["weight"] = "ten"
    b = body("VirtualService", spec)
    b["metadata"]["name"] = "Bad_Name"
    found = dict(problems(b))
    assert found["spec.http[0].foo"] == 'unknown field "foo"'
    assert "must be of type integer" in found["spec.http[0].route[0].weight"]
    assert "metadata.name" in found


def test_all_semantic_problems_are_collected() -> None:
    spec = {
        "hosts": ["*"],
        "http": [
            {
                "route": [
                    {"destination": {"host": "a"}, "weight": -1},
                    {"destination": {"host": "b"}, "weight": 0},
                ],
                "timeout": "10",
            }
        ],
    }
    paths = {p for p, _ in problems(body("VirtualService", spec))}
    assert {"spec.hosts[0]", "spec.http[0].route[0].weight", "spec.http[0].timeout"} <= paths


def test_error_names_resource_and_source() -> None:
    src = Source("vs.yaml", 2, 14)
    with pytest.raises(ValidationError) as e:
        validate(body("VirtualService", {"hosts": ["r"]}, name="reviews"), source=src)
    assert e.value.source == src
    text = str(e.value)
    assert text.startswith("vs.yaml (document 3, line 14): VirtualService default/reviews: ")
    assert "http, tcp or tls must be provided in virtual service" in text


def test_pod_bodies_validate() -> None:
    pod = body("Pod", {"containers": [{"name": "app"}]}, status={"phase": "Running"})
    v = ok(pod)
    assert not v.info.appliable
