"""Kubernetes kinds: Service, Deployment, Namespace, Secret."""

from __future__ import annotations

import copy
from typing import Any

from ._util import body, has, ok


def svc(*ports: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return body(
        "Service", {"selector": {"app": "reviews"}, "ports": list(ports), **spec}, name="reviews"
    )


def test_service_ports() -> None:
    has(svc(), "spec.ports", "Required value")
    has(svc({"port": 0}), "spec.ports[0].port", "must be between 1 and 65535")
    has(svc({"port": 80, "name": "http"}, {"port": 81}), "spec.ports[1].name", "Required value")
    has(
        svc({"port": 80, "name": "http"}, {"port": 81, "name": "http"}),
        "spec.ports[1].name",
        'Duplicate value: "http"',
    )
    has(
        svc({"port": 80, "protocol": "HTTP"}), "spec.ports[0].protocol", 'Unsupported value: "HTTP"'
    )
    has(
        svc({"port": 80, "targetPort": 70000}),
        "spec.ports[0].targetPort",
        "must be between 1 and 65535",
    )
    has(svc({"port": 80, "targetPort": "Not_A_Name"}), "spec.ports[0].targetPort", "alpha-numeric")
    ok(
        svc(
            {"port": 9080, "name": "http", "targetPort": 9080},
            {"port": 9443, "name": "https", "targetPort": "https", "protocol": "TCP"},
        )
    )
    ok(svc({"port": 53, "protocol": "UDP"}))
    ok(body("Service", {"clusterIP": "None", "selector": {"app": "x"}}))


def test_service_name_is_a_dns1035_label() -> None:
    b = svc({"port": 80})
    b["metadata"]["name"] = "1reviews"
    has(b, "metadata.name", "DNS-1035 label")


DEPLOY: dict[str, Any] = {
    "replicas": 1,
    "selector": {"matchLabels": {"app": "reviews", "version": "v1"}},
    "template": {
        "metadata": {"labels": {"app": "reviews", "version": "v1"}},
        "spec": {
            "containers": [
                {
                    "name": "reviews",
                    "command": ["python3", "-m", "http.server"],
                    "ports": [{"containerPort": 9080}],
                }
            ]
        },
    },
}


def deploy(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(DEPLOY)
    spec.update(changes)
    return body("Deployment", spec, name="reviews-v1")


def test_deployment_selector_must_match_template() -> None:
    ok(deploy())
    has(
        deploy(selector={"matchLabels": {"app": "ratings"}}),
        "spec.template.metadata.labels",
        "`selector` does not match template `labels`",
    )
    has(deploy(selector={}), "spec.selector", "Required value")


def test_deployment_containers() -> None:
    template = copy.deepcopy(DEPLOY["template"])
    template["spec"]["containers"] = []
    has(deploy(template=template), "spec.template.spec.containers", "Required value")
    template["spec"]["containers"] = [{"image": "x"}]
    has(deploy(template=template), "spec.template.spec.containers[0].name", "Required value")
    template["spec"]["containers"] = [{"name": "a"}, {"name": "a"}]
    has(deploy(template=template), "spec.template.spec.containers[1].name", 'Duplicate value: "a"')


def test_deployment_replicas() -> None:
    has(deploy(replicas=-1), "spec.replicas", "must be greater than or equal to 0")
    ok(deploy(replicas=0))


def test_deployment_env() -> None:
    template = copy.deepcopy(DEPLOY["template"])
    template["spec"]["containers"][0]["env"] = [{"name": "1BAD", "value": "x"}]
    has(
        deploy(template=template),
        "spec.template.spec.containers[0].env[0].name",
        "valid environment variable name",
    )
    template["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
    ]
    has(
        deploy(template=template),
        "spec.template.spec.containers[0].env[0].valueFrom",
        "may not be specified",
    )


def test_namespace_and_secret() -> None:
    ok(
        body(
            "Namespace",
            None,
            name="bookinfo",
            metadata={"name": "bookinfo", "labels": {"istio-injection": "enabled"}},
        )
    )
    has(
        body("Secret", None, data={"tls.crt": "not base64!"}),
        "data[tls.crt]",
        "illegal base64 data",
    )
    has(body("Secret", None, data={"bad key": "YQ=="}), "data[bad key]", "a valid config key")
    ok(
        body(
            "Secret",
            None,
            type="kubernetes.io/tls",
            data={"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
            stringData={"ca.crt": "pem"},
        )
    )
    ok(body("ServiceAccount", None, name="bookinfo-reviews"))


def test_deployment_strategy_is_checked_like_kubernetes() -> None:
    ok(deploy(strategy={"type": "RollingUpdate",
                        "rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 0}}))  # fmt: skip
    ok(deploy(strategy={"type": "Recreate"}))
    has(
        deploy(strategy={"type": "BlueGreen"}),
        "spec.strategy.type",
        'Unsupported value: "BlueGreen"',
    )
    has(
        deploy(strategy={"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}),
        "spec.strategy.rollingUpdate",
        "may not be specified",
    )
    has(
        deploy(strategy={"rollingUpdate": {"maxSurge": "x%"}}),
        "spec.strategy.rollingUpdate.maxSurge",
        "non-negative integer or a percentage",
    )
    has(
        deploy(strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}),
        "spec.strategy.rollingUpdate.maxUnavailable",
        "may not be 0 when `maxSurge` is 0",
    )


def test_proxy_config_annotation_warns_about_what_is_not_applied() -> None:
    template = copy.deepcopy(DEPLOY["template"])
    template["metadata"]["annotations"] = {
        "proxy.istio.io/config": "proxyMetadata:\n  SECRET_TTL: 1h\n  OTHER: x\n"
    }
    res = ok(deploy(template=template))
    where = "spec.template.metadata.annotations[proxy.istio.io/config].proxyMetadata"
    assert [w.path for w in res.warnings] == [f"{where}.OTHER"], res.warnings
    bad = "proxyMetadata: {SECRET_TTL: x}"
    template["metadata"]["annotations"] = {"proxy.istio.io/config": bad}
    has(deploy(template=template), f"{where}.SECRET_TTL", "invalid duration")


def _warned(b: dict[str, Any]) -> dict[str, str]:
    return {w.path: w.reason for w in ok(b).warnings}


def test_an_env_var_from_a_field_path_the_runtime_does_not_fill_is_warned_about() -> None:
    d = deploy()
    d["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
    ]
    warned = _warned(d)
    c = "spec.template.spec.containers[0]"
    assert '"status.hostIP"' in warned[f"{c}.env[0].valueFrom.fieldRef.fieldPath"]
    assert "empty string" in warned[f"{c}.env[0].valueFrom.fieldRef.fieldPath"]
    assert not any(p.startswith((f"{c}.env[1]", f"{c}.env[2]")) for p in warned)


def test_a_headless_service_is_warned_about() -> None:
    warned = _warned(body("Service", {"clusterIP": "None", "selector": {"app": "a"}}))
    assert "headless" in warned["spec.clusterIP"]
    assert "spec.clusterIP" not in _warned(svc({"port": 80}, clusterIP="10.96.0.9"))
