"""Typed models: Istio/Kubernetes field names, defaults, unknown fields and field paths."""

from __future__ import annotations

from typing import Any

import pytest

from pilotfish.api import KINDS, MODELS, parse, parse_duration
from pilotfish.api.security import AuthorizationPolicy
from pilotfish.api.virtualservice import VirtualService
from pilotfish.api.workloads import Deployment, Pod
from pilotfish.errors import UnknownKindError, ValidationError


def vs_body(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "reviews"},
        "spec": spec,
    }


def test_every_kind_has_a_model() -> None:
    assert set(MODELS) == {k.kind for k in KINDS}


def test_virtual_service_fields_are_istio_names() -> None:
    vs = parse(
        vs_body(
            hosts=["reviews"],
            http=[
                {
                    "match": [
                        {"uri": {"prefix": "/api"}, "headers": {"end-user": {"exact": "jason"}}}
                    ],
                    "route": [
                        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 80},
                        {
                            "destination": {
                                "host": "reviews",
                                "subset": "v1",
                                "port": {"number": 9080},
                            }
                        },
                    ],
                    "timeout": "0.5s",
                    "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
                    "fault": {"delay": {"percentage": {"value": 10}, "fixedDelay": "5s"}},
                }
            ],
        )
    )
    assert isinstance(vs, VirtualService)
    route = vs.spec.http[0]
    assert route.route[0].destination.host == "reviews"
    assert route.match[0].uri is not None and route.match[0].uri.prefix == "/api"
    assert route.match[0].headers["end-user"].exact == "jason"
    assert route.route[1].weight is None and (route.route[1].weight or 0) == 0
    assert route.route[1].destination.port is not None
    assert route.route[1].destination.port.number == 9080
    assert route.fault is not None and route.fault.delay is not None
    assert route.fault.delay.percentage is not None and route.fault.delay.percentage.value == 10.0
    assert parse_duration(route.timeout or "") == 0.5
    assert vs.spec.tcp == [] and vs.spec.gateways == []


def test_destination_rule_deep_fields() -> None:
    dr = parse(
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": "r"},
            "spec": {
                "host": "reviews",
                "trafficPolicy": {
                    "connectionPool": {"http": {"http1MaxPendingRequests": 1}},
                    "loadBalancer": {
                        "consistentHash": {"httpCookie": {"name": "u", "path": "/", "ttl": "0s"}}
                    },
                },
            },
        }
    )
    tp = dr.spec.trafficPolicy  # type: ignore[attr-defined]
    assert tp.connectionPool.http.http1MaxPendingRequests == 1
    assert tp.loadBalancer.consistentHash.httpCookie.ttl == "0s"


def test_from_is_read_and_written_with_its_json_name() -> None:
    body = {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "a"},
        "spec": {"rules": [{"from": [{"source": {"principals": ["p"]}}]}]},
    }
    ap = parse(body)
    assert isinstance(ap, AuthorizationPolicy)
    src = ap.spec.rules[0].from_[0].source
    assert src is not None and src.principals == ["p"]
    assert ap.to_dict() == body


def test_unknown_field_is_reported_with_its_path() -> None:
    with pytest.raises(ValidationError) as e:
        parse(vs_body(hosts=["r"], http=[{"route": [], "foo": 1}]))
    paths = {(x.path, x.reason) for x in e.value.errors}
    assert ("spec.http[0].foo", 'unknown field "foo"') in paths


def test_wrong_types_and_map_keys_in_paths() -> None:
    with pytest.raises(ValidationError) as e:
        parse(
            vs_body(
                hosts="reviews",
                http=[
                    {
                        "match": [{"headers": {"x-a": {"exact": 1}}}],
                        "route": [{"destination": {"host": "r"}, "weight": "x"}],
                    }
                ],
            )
        )
    by_path = {x.path: x.reason for x in e.value.errors}
    assert "must be of type array" in by_path["spec.hosts"]
    assert "must be of type string" in by_path["spec.http[0].match[0].headers[x-a].exact"]
    assert "must be of type integer" in by_path["spec.http[0].route[0].weight"]
    assert str(e.value).startswith("VirtualService reviews: ")


def test_enum_values_are_checked() -> None:
    with pytest.raises(ValidationError) as e:
        parse(
            {
                "apiVersion": "security.istio.io/v1",
                "kind": "AuthorizationPolicy",
                "metadata": {"name": "a"},
                "spec": {"action": "PERMIT"},
            }
        )
    (err,) = e.value.errors
    assert err.path == "spec.action"
    assert 'Unsupported value: "PERMIT"' in err.reason and "'DENY'" in err.reason


def test_int_or_string_target_port() -> None:
    def svc(target: Any) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": target}]},
        }

    assert parse(svc(9080)).spec.ports[0].targetPort == 9080  # type: ignore[attr-defined]
    assert parse(svc("http")).spec.ports[0].targetPort == "http"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as e:
        parse(svc([1]))
    assert e.value.errors[0].path == "spec.ports[0].targetPort"
    assert "integer or string" in e.value.errors[0].reason


def test_envoy_filter_patch_value_is_free_form() -> None:
    ef = parse(
        {
            "apiVersion": "networking.istio.io/v1alpha3",
            "kind": "EnvoyFilter",
            "metadata": {"name": "f"},
            "spec": {
                "configPatches": [
                    {
                        "applyTo": "HTTP_FILTER",
                        "patch": {"operation": "ADD", "value": {"any": [1, {"x": None}]}},
                    }
                ]
            },
        }
    )
    assert ef.spec.configPatches[0].patch.value == {"any": [1, {"x": None}]}  # type: ignore[attr-defined]


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "reviews-v1", "labels": {"app": "reviews", "version": "v1"}},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
        "template": {
            "metadata": {"labels": {"app": "reviews", "version": "v1"}},
            "spec": {
                "serviceAccountName": "bookinfo-reviews",
                "containers": [
                    {
                        "name": "reviews",
                        "image": "docker.io/istio/examples-bookinfo-reviews-v1:1.20.2",
                        "imagePullPolicy": "IfNotPresent",
                        "env": [
                            {"name": "LOG_DIR", "value": "/tmp/logs"},
                            {
                                "name": "POD_IP",
                                "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                            },
                        ],
                        "ports": [{"containerPort": 9080}],
                        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        "securityContext": {"runAsUser": 1000},
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/health", "port": 9080}},
                        "command": ["python3", "app.py"],
                        "args": ["9080"],
                        "workingDir": "/opt",
                    }
                ],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
    },
}


def test_real_deployment_manifest_loads() -> None:
    d = parse(DEPLOYMENT)
    assert isinstance(d, Deployment)
    c = d.spec.template.spec.containers[0]
    assert c.env[1].valueFrom is not None and c.env[1].valueFrom.fieldRef is not None
    assert c.env[1].valueFrom.fieldRef.fieldPath == "status.podIP"
    assert c.command == ["python3", "app.py"] and c.workingDir == "/opt"


def test_pod_status_and_readiness() -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reviews-v1-abc"},
        "spec": {"containers": [{"name": "reviews"}], "nodeName": "host-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.88.0.5",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "reviews", "ready": True, "restartCount": 0}],
        },
    }
    pod = parse(body)
    assert isinstance(pod, Pod) and pod.ready
    assert pod.status is not None and pod.status.podIP == "10.88.0.5"
    body["status"]["conditions"][0]["status"] = "False"
    assert not parse(body).ready  # type: ignore[attr-defined]


def test_secret_fields() -> None:
    s = parse(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cred"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Y2VydA=="},
            "stringData": {"note": "plain"},
        }
    )
    assert s.type == "kubernetes.io/tls" and s.data["tls.crt"] == "Y2VydA=="  # type: ignore[attr-defined]


def test_unknown_kind_and_version() -> None:
    with pytest.raises(UnknownKindError):
        parse({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": {}})
    with pytest.raises(UnknownKindError, match="served"):
        parse({"apiVersion": "networking.istio.io/v2", "kind": "VirtualService", "metadata": {}})


def test_models_are_read_only() -> None:
    vs = parse(vs_body(hosts=["r"]))
    with pytest.raises(Exception):  # noqa: B017  (pydantic's frozen-instance error)
        vs.spec = None  # type: ignore[attr-defined]
