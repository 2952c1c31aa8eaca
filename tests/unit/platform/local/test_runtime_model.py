"""Deployments to pods, statuses, service tables and container commands (pure)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from pilotfish.platform.local.hosts import ServiceName
from pilotfish.platform.local.runtime_model import (
    POD_TEMPLATE_HASH,
    PROXY_CONTAINER,
    SIDECAR_STATUS_ANNOTATION,
    DeploymentPlan,
    container_process,
    deployment_status,
    holds_application,
    is_injected,
    new_pod,
    owner_deployment,
    plan_deployments,
    pod_is_ready,
    pod_status,
    rolling_limits,
    selector_matches,
    service_endpoints,
    service_names,
    template_hash,
)
from pilotfish.platform.local.service_lb import Endpoint


def deployment(
    name: str = "reviews-v1", replicas: int | None = 1, ns: str = "default", **template: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "reviews"}},
        "template": {
            "metadata": {"labels": {"app": "reviews", "version": "v1"}},
            "spec": {
                "serviceAccountName": "bookinfo-reviews",
                "containers": [
                    {
                        "name": "reviews",
                        "command": ["python3", "samples/bookinfo/src/reviews.py"],
                        "env": [{"name": "PORT", "value": "9080"}],
                        "ports": [{"containerPort": 9080, "name": "http"}],
                    }
                ],
                **template,
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "generation": 3},
        "spec": spec,
    }


def as_stored(pod: dict[str, Any], rv: int, ready: bool = False, ip: str = "") -> dict[str, Any]:
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["resourceVersion"] = str(rv)
    pod["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:{rv:02d}Z"
    if ready:
        pod["status"] = {
            "phase": "Running",
            "podIP": ip or f"10.244.0.{rv}",
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    return pod


NS = {"default": {"metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}}}


def test_template_hash_is_stable_and_follows_the_template() -> None:
    a = deployment()["spec"]["template"]
    assert template_hash(a) == template_hash(json.loads(json.dumps(a)))
    assert len(template_hash(a)) == 10
    b = deployment(hostname="x")["spec"]["template"]
    assert template_hash(a) != template_hash(b)


def test_scale_up_creates_named_injected_pods_owned_by_the_deployment() -> None:
    dep = deployment(replicas=3)
    plan = plan_deployments([dep], [], NS, random.Random(1))
    assert plan.delete == []
    assert len(plan.create) == 3
    hash_ = template_hash(dep["spec"]["template"])
    names = {p["metadata"]["name"] for p in plan.create}
    assert len(names) == 3
    for pod in plan.create:
        name = pod["metadata"]["name"]
        assert name.startswith(f"reviews-v1-{hash_}-") and len(name.rsplit("-", 1)[1]) == 5
        assert pod["metadata"]["labels"] == {"app": "reviews", "version": "v1",
                                             POD_TEMPLATE_HASH: hash_}  # fmt: skip
        assert owner_deployment(pod) == "reviews-v1"
        assert SIDECAR_STATUS_ANNOTATION in pod["metadata"]["annotations"]
        assert [c["name"] for c in pod["spec"]["containers"]] == ["reviews", PROXY_CONTAINER]
        assert pod["status"] == {"phase": "Pending"}


def test_no_sidecar_outside_injected_namespaces_and_the_pod_label_wins() -> None:
    plain = plan_deployments([deployment(ns="legacy")], [], NS, random.Random(1)).create[0]
    assert SIDECAR_STATUS_ANNOTATION not in plain["metadata"].get("annotations", {})
    assert [c["name"] for c in plain["spec"]["containers"]] == ["reviews"]
    ns_on = NS["default"]
    template = {"metadata": {"labels": {"sidecar.istio.io/inject": "false"}}}
    assert not is_injected(ns_on, template)
    assert is_injected(None, {"metadata": {"annotations": {"sidecar.istio.io/inject": "true"}}})
    assert is_injected(ns_on, {"metadata": {}})
    assert not is_injected({"metadata": {"labels": {"istio-injection": "disabled"}}}, {})


def annotated(annotations: dict[str, str]) -> dict[str, Any]:
    dep = deployment()
    dep["spec"]["template"]["metadata"]["annotations"] = annotations
    return dep


def test_hold_application_until_proxy_starts_puts_the_proxy_first_with_istios_hook() -> None:
    asked: list[str] = []

    def mesh_hold() -> bool:
        asked.append("mesh")
        return False

    # Istio's default: the app and the proxy start together, the proxy listed last.
    pod = plan_deployments([deployment()], [], NS, random.Random(1), mesh_hold).create[0]
    assert [c["name"] for c in pod["spec"]["containers"]] == ["reviews", PROXY_CONTAINER]
    assert not holds_application(pod) and asked == ["mesh"]
    # The pod's proxy.istio.io/config asks: the proxy first, its postStart waits for it.
    config = {"proxy.istio.io/config": "holdApplicationUntilProxyStarts: true"}
    held = plan_deployments([annotated(config)], [], NS, random.Random(1), mesh_hold).create[0]
    proxy = held["spec"]["containers"][0]
    assert [c["name"] for c in held["spec"]["containers"]] == [PROXY_CONTAINER, "reviews"]
    assert proxy["lifecycle"] == {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
    assert holds_application(held)
    # The mesh's defaultConfig holds every injected pod unless the pod says otherwise.
    by_mesh = plan_deployments([deployment()], [], NS, random.Random(1), lambda: True).create[0]
    assert holds_application(by_mesh)
    unheld = {"proxy.istio.io/config": "holdApplicationUntilProxyStarts: false"}
    pod_says = plan_deployments([annotated(unheld)], [], NS, random.Random(1), lambda: True)
    assert not holds_application(pod_says.create[0])
    # Pods without a sidecar never ask the mesh.
    asked.clear()
    plan_deployments([deployment(ns="legacy")], [], NS, random.Random(1), mesh_hold)
    assert asked == []


def test_steady_state_plans_nothing() -> None:
    dep = deployment(replicas=2)
    pods = [as_stored(p, i + 1) for i, p in enumerate(plan_deployments([dep], [], NS,
            random.Random(2)).create)]  # fmt: skip
    plan = plan_deployments([dep], pods, NS, random.Random(3))
    assert plan.create == [] and plan.delete == []


def test_a_deleted_pod_is_replaced() -> None:
    dep = deployment(replicas=2)
    pods = [as_stored(p, i + 1) for i, p in enumerate(plan_deployments([dep], [], NS,
            random.Random(2)).create)]  # fmt: skip
    plan = plan_deployments([dep], pods[:1], NS, random.Random(3))
    assert len(plan.create) == 1 and plan.delete == []
    assert plan.create[0]["metadata"]["name"] != pods[0]["metadata"]["name"]


def test_scale_down_removes_not_ready_pods_then_the_newest() -> None:
    dep = deployment(replicas=4)
    created = plan_deployments([dep], [], NS, random.Random(2)).create
    pods = [
        as_stored(created[0], 1, ready=True),
        as_stored(created[1], 2, ready=False),
        as_stored(created[2], 3, ready=True),
        as_stored(created[3], 4, ready=True),
    ]
    dep["spec"]["replicas"] = 2
    plan = plan_deployments([dep], pods, NS, random.Random(3))
    assert plan.create == []
    names = [p["metadata"]["name"] for p in pods]
    assert sorted(plan.delete) == sorted([("default", names[1]), ("default", names[3])])


def test_replicas_default_to_one_and_zero_removes_all() -> None:
    assert len(plan_deployments([deployment(replicas=None)], [], NS, random.Random(1)).create) == 1
    dep = deployment(replicas=1)
    pod = as_stored(plan_deployments([dep], [], NS, random.Random(1)).create[0], 1, ready=True)
    dep["spec"]["replicas"] = 0
    assert plan_deployments([dep], [pod], NS, random.Random(1)).delete == [
        ("default", pod["metadata"]["name"])
    ]


def test_template_change_rolls_old_pods_out_as_new_ones_get_ready() -> None:
    # 3 replicas: Kubernetes' defaults give a surge of 1 (25 % up) and 0 unavailable (down).
    dep = deployment(replicas=3)
    old = [as_stored(p, i + 1, ready=True) for i, p in enumerate(
        plan_deployments([dep], [], NS, random.Random(2)).create)]  # fmt: skip
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    plan = plan_deployments([dep], old, NS, random.Random(3))
    assert len(plan.create) == 1 and plan.delete == []  # one more pod, nothing ready yet
    new = [as_stored(plan.create[0], 10)]
    assert plan_deployments([dep], old + new, NS, random.Random(3)) == DeploymentPlan()
    new = [as_stored(plan.create[0], 10, ready=True)]
    plan = plan_deployments([dep], old + new, NS, random.Random(3))
    assert plan.create == [] and len(plan.delete) == 1
    assert plan.delete[0][1] in {p["metadata"]["name"] for p in old}
    # The pass after the delete: the pod is gone, so it counts as unavailable; a second
    # old pod goes only once a second new one is ready.
    left = [p for p in old if p["metadata"]["name"] != plan.delete[0][1]]
    plan = plan_deployments([dep], left + new, NS, random.Random(4))
    assert len(plan.create) == 1 and plan.delete == []
    second = as_stored(plan.create[0], 11)
    assert plan_deployments([dep], left + new + [second], NS, random.Random(4)) == DeploymentPlan()


def test_rolling_limits_follow_the_strategy_like_kubernetes() -> None:
    assert rolling_limits({}, 3) == (1, 0)
    assert rolling_limits({}, 10) == (3, 2)
    spec = {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "50%"}}}
    assert rolling_limits(spec, 3) == (0, 1)
    assert rolling_limits(
        {"strategy": {"rollingUpdate": {"maxSurge": "0%", "maxUnavailable": 0}}}, 4
    ) == (0, 1)
    # maxUnavailable 1, no surge: an old ready pod goes first, then a new one is made.
    dep = deployment(replicas=2)
    dep["spec"]["strategy"] = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    old = [as_stored(p, i + 1, ready=True) for i, p in enumerate(
        plan_deployments([dep], [], NS, random.Random(2)).create)]  # fmt: skip
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    plan = plan_deployments([dep], old, NS, random.Random(3))
    assert plan.create == [] and len(plan.delete) == 1


def test_recreate_deletes_every_old_pod_before_creating() -> None:
    dep = deployment(replicas=2)
    dep["spec"]["strategy"] = {"type": "Recreate"}
    old = [as_stored(p, i + 1, ready=True) for i, p in enumerate(
        plan_deployments([dep], [], NS, random.Random(2)).create)]  # fmt: skip
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
    plan = plan_deployments([dep], old, NS, random.Random(3))
    assert plan.create == [] and len(plan.delete) == 2
    assert len(plan_deployments([dep], [], NS, random.Random(3)).create) == 2


def test_failed_and_orphaned_pods_are_deleted() -> None:
    dep = deployment(replicas=1)
    pod = as_stored(plan_deployments([dep], [], NS, random.Random(1)).create[0], 1)
    pod["status"] = {"phase": "Failed"}
    plan = plan_deployments([dep], [pod], NS, random.Random(2))
    assert plan.delete == [("default", pod["metadata"]["name"])] and len(plan.create) == 1
    orphan = as_stored(new_pod(deployment("gone"), "gone-abc-12345", "abc", False), 2)
    assert plan_deployments([], [orphan], NS, random.Random(1)).delete == [
        ("default", "gone-abc-12345")
    ]


def test_pod_status_reports_readiness_like_kubernetes() -> None:
    status = pod_status(
        phase="Running",
        pod_ip="10.244.0.7",
        host_ip="10.244.0.1",
        start_time="t0",
        containers=[("reviews", True, 0, "running"), ("istio-proxy", True, 1, "running")],
        transition_time="t1",
    )
    pod = {"status": status}
    assert pod_is_ready(pod)
    assert status["podIP"] == "10.244.0.7" and status["podIPs"] == [{"ip": "10.244.0.7"}]
    assert [c["restartCount"] for c in status["containerStatuses"]] == [0, 1]
    not_ready = pod_status(
        phase="Running",
        pod_ip="10.244.0.7",
        host_ip="h",
        start_time=None,
        containers=[("reviews", False, 0, "running"), ("istio-proxy", True, 0, "running")],
        transition_time="t1",
    )
    assert not pod_is_ready({"status": not_ready})
    pending = pod_status(phase="Pending", pod_ip=None, host_ip="h", start_time=None,
                         containers=[], transition_time="t")  # fmt: skip
    assert "podIP" not in pending and not pod_is_ready({"status": pending})


def test_deployment_status_counts_ready_and_updated_pods() -> None:
    dep = deployment(replicas=2)
    created = plan_deployments([dep], [], NS, random.Random(2)).create
    pods = [as_stored(created[0], 1, ready=True), as_stored(created[1], 2)]
    status = deployment_status(dep, pods)
    assert status["readyReplicas"] == 1 and status["replicas"] == 2
    assert status["updatedReplicas"] == 2 and status["observedGeneration"] == 3
    assert status["conditions"][0]["status"] == "False"
    pods[1] = as_stored(created[1], 2, ready=True)
    assert deployment_status(dep, pods)["availableReplicas"] == 2


def svc(name: str, vip: str, selector: dict[str, str] | None, ports: list[dict[str, Any]],
        ns: str = "default") -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"clusterIP": vip, "ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {"kind": "Service", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_service_endpoints_are_ready_selected_pods_with_resolved_target_ports() -> None:
    dep = deployment(replicas=3)
    created = plan_deployments([dep], [], NS, random.Random(2)).create
    pods = [
        as_stored(created[0], 5, ready=True, ip="10.244.0.5"),
        as_stored(created[1], 6, ready=False),
        as_stored(created[2], 7, ready=True, ip="10.244.0.7"),
    ]
    other_ns = as_stored(new_pod(deployment(ns="other"), "x-1-abcde", "1", False), 9,
                         ready=True, ip="10.244.0.9")  # fmt: skip
    services = [
        svc("reviews", "10.96.0.10", {"app": "reviews"},
            [{"port": 9080, "name": "http"}, {"port": 80, "name": "web", "targetPort": "http"},
             {"port": 53, "name": "dns", "protocol": "UDP"}]),
        svc("headless", "None", {"app": "reviews"}, [{"port": 1}]),
        svc("external", "10.96.0.11", None, [{"port": 1}]),
        svc("nobody", "10.96.0.12", {"app": "nobody"}, [{"port": 8000, "targetPort": 8080}]),
    ]  # fmt: skip
    table = {(s.vip, s.port): s for s in service_endpoints(services, [*pods, other_ns])}
    assert set(table) == {("10.96.0.10", 9080), ("10.96.0.10", 80), ("10.96.0.12", 8000)}
    expected = (Endpoint("10.244.0.5", 9080), Endpoint("10.244.0.7", 9080))
    assert table[("10.96.0.10", 9080)].endpoints == expected
    assert table[("10.96.0.10", 80)].endpoints == expected  # named targetPort "http" -> 9080
    assert table[("10.96.0.12", 8000)].endpoints == ()
    assert service_names(services) == [
        ServiceName("reviews", "default", "10.96.0.10"),
        ServiceName("external", "default", "10.96.0.11"),
        ServiceName("nobody", "default", "10.96.0.12"),
    ]


def test_selector_matches_match_labels_and_expressions() -> None:
    labels = {"app": "reviews", "version": "v2"}
    assert selector_matches({"matchLabels": {"app": "reviews"}}, labels)
    assert not selector_matches({"matchLabels": {"app": "ratings"}}, labels)
    exprs = [
        {"key": "version", "operator": "In", "values": ["v1", "v2"]},
        {"key": "track", "operator": "DoesNotExist"},
    ]
    assert selector_matches({"matchExpressions": exprs}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "version", "operator": "NotIn",
                                 "values": ["v2"]}]}, labels)  # fmt: skip
    assert not selector_matches({}, labels)


def test_container_process_command_env_and_users() -> None:
    pod = new_pod(deployment(), "reviews-v1-abc-12345", "abc", False)
    c = dict(pod["spec"]["containers"][0])
    c["args"] = ["--flag"]
    c["env"] = [
        {"name": "PORT", "value": "9080"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
    ]
    proc = container_process(pod, c, pod_ip="10.244.0.9", default_uid=999, default_gid=998,
                             pod_python="/usr/bin/python3")  # fmt: skip
    assert proc.argv == ("/usr/bin/python3", "samples/bookinfo/src/reviews.py", "--flag")
    assert proc.env == {"HOSTNAME": "reviews-v1-abc-12345", "PORT": "9080",
                        "POD_NAME": "reviews-v1-abc-12345", "POD_IP": "10.244.0.9",
                        "APP": "reviews"}  # fmt: skip
    assert (proc.uid, proc.gid, proc.ports) == (999, 998, (9080,))
    # Readiness without a probe waits for TCP ports only: a UDP port never accepts.
    c["ports"] = [*c["ports"], {"containerPort": 53, "protocol": "UDP"}]
    udp = container_process(pod, c, pod_ip="x", default_uid=999, default_gid=998, pod_python="p")
    assert udp.ports == (9080,)
    # A probe naming its port gets the container port of that name, not the first one.
    from types import SimpleNamespace

    from pilotfish.platform.local.runtime_pod import _resolve_port

    c["ports"] = [{"containerPort": 9000, "name": "admin"}, *c["ports"]]
    named = container_process(pod, c, pod_ip="x", default_uid=1, default_gid=1, pod_python="p")
    assert named.named_ports == {"admin": 9000, "http": 9080}
    holder: Any = SimpleNamespace(spec=named)
    assert [_resolve_port(p, holder) for p in ("http", "admin", 7000, "7001", "nope")] == [
        9080, 9000, 7000, 7001, None,
    ]  # fmt: skip
    pod["spec"]["securityContext"] = {"runAsUser": 1500}
    as_pod_user = container_process(pod, c, pod_ip="x", default_uid=999, default_gid=998,
                                    pod_python="p")  # fmt: skip
    assert (as_pod_user.uid, as_pod_user.gid) == (1500, 1500)
    c["securityContext"] = {"runAsUser": 1600, "runAsGroup": 1601}
    own = container_process(pod, c, pod_ip="x", default_uid=999, default_gid=998, pod_python="p")
    assert (own.uid, own.gid) == (1600, 1601)


def test_container_without_command_is_an_error_naming_the_field() -> None:
    pod = new_pod(deployment(), "p-abc-12345", "abc", False)
    with pytest.raises(ValueError, match=r"default/p-abc-12345: spec.containers\[reviews\]"):
        container_process(pod, {"name": "reviews", "image": "x"}, pod_ip="x", default_uid=1,
                          default_gid=1, pod_python="p")  # fmt: skip


def test_the_egress_gateway_deployment_makes_a_gateway_pod() -> None:
    from pilotfish.platform.local.egressgateway import EGRESS_LABELS, egress_gateway_objects

    dep, svc = egress_gateway_objects()
    assert svc["spec"]["ports"] == [
        {"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"},
        {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
    ]
    template = dep["spec"]["template"]
    assert is_injected(None, template)  # sidecar.istio.io/inject: "true", whatever the namespace
    pod = new_pod(dep, "istio-egressgateway-abc-12345", "abc", True)
    (proxy,) = pod["spec"]["containers"]  # the proxy is the pod: no app container
    assert proxy["args"] == ["proxy", "router"]
    assert [p["containerPort"] for p in proxy["ports"]] == [8080, 8443, 15090]
    assert EGRESS_LABELS.items() <= pod["metadata"]["labels"].items()
    # A sidecar pod is unchanged by the template logic.
    sidecar = new_pod(deployment(), "reviews-v1-abc-12345", "abc", True)
    assert sidecar["spec"]["containers"][-1]["args"] == ["proxy", "sidecar"]
