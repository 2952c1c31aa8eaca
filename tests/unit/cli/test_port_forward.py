"""`pilotfish port-forward`: kubectl's target and port forms, picking the pod behind a Service
or Deployment, and the Service's targetPort (numeric or a named container port)."""

from __future__ import annotations

from typing import Any

import click
import pytest

from pilotfish.cli.portforward_cmd import (
    ADDONS,
    parse_ports,
    parse_target,
    pod_port,
    select_pod,
    service_target_port,
)
from pilotfish.errors import PilotfishError


def test_targets_as_kubectl_writes_them() -> None:
    assert parse_target("svc/kiali") == ("Service", "kiali")
    assert parse_target("service/reviews") == ("Service", "reviews")
    assert parse_target("deploy/productpage-v1") == ("Deployment", "productpage-v1")
    assert parse_target("pod/reviews-v1-abc") == ("Pod", "reviews-v1-abc")
    assert parse_target("reviews-v1-abc") == ("Pod", "reviews-v1-abc")
    with pytest.raises(click.BadParameter, match="svc/SERVICE"):
        parse_target("configmap/x")


def test_port_forms() -> None:
    assert parse_ports(["20001:20001", "8080", ":9080"]) == [
        (20001, 20001),
        (8080, 8080),
        (0, 9080),
    ]
    with pytest.raises(click.BadParameter):
        parse_ports(["http"])
    with pytest.raises(click.BadParameter):
        parse_ports(["8080:0"])


def pod(name: str, labels: dict[str, str], phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "containers": [{"name": "app", "ports": [{"name": "web", "containerPort": 9080}]}]
        },
        "status": {"phase": phase},
    }


def test_a_running_pod_the_selector_picks() -> None:
    pods = [
        pod("reviews-v2-b", {"app": "reviews", "version": "v2"}),
        pod("reviews-v1-a", {"app": "reviews", "version": "v1"}, phase="Pending"),
        pod("ratings-v1-a", {"app": "ratings"}),
    ]
    assert select_pod(pods, {"app": "reviews"})["metadata"]["name"] == "reviews-v2-b"
    with pytest.raises(PilotfishError, match="no running pod matches the selector app=details"):
        select_pod(pods, {"app": "details"})


def test_service_port_to_target_port() -> None:
    svc = {
        "metadata": {"name": "productpage"},
        "spec": {"ports": [{"port": 80, "targetPort": "web"}, {"port": 9080}]},
    }
    assert service_target_port(svc, 9080) == 9080
    assert service_target_port(svc, 80) == "web"
    assert pod_port(pod("p", {}), "web") == 9080
    assert pod_port(pod("p", {}), 8080) == 8080
    with pytest.raises(PilotfishError, match='Service "productpage" has no port 81'):
        service_target_port(svc, 81)
    with pytest.raises(PilotfishError, match='no container port named "grpc"'):
        pod_port(pod("p", {}), "grpc")


def test_istio_addon_names() -> None:
    assert ADDONS["kiali"] == "dashboard" and ADDONS["tracing"] == "jaeger"
