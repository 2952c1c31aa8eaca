"""Webhook URLs that name a mesh Service go to one of its ready pods."""

from __future__ import annotations

import random
from typing import Any

from pilotfish.canary.endpoints import resolve

SERVICES = {
    ("test", "flagger-loadtester"): {
        "spec": {
            "selector": {"app": "flagger-loadtester"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        }
    }
}


def pod(ip: str, ready: bool) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "test", "labels": {"app": "flagger-loadtester"}},
        "spec": {"containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_a_service_name_goes_to_a_ready_pod_on_its_target_port() -> None:
    pods = [pod("10.0.0.5", False), pod("10.0.0.6", True)]
    for url in (
        "http://flagger-loadtester.test/",
        "http://flagger-loadtester/",
        "http://flagger-loadtester.test.svc.cluster.local:80/x",
    ):
        t = resolve(url, "test", SERVICES, pods, random.Random(1))
        assert t.url.startswith("http://10.0.0.6:8080/"), t
        assert t.host is not None and t.host.startswith("flagger-loadtester")


def test_other_urls_and_services_without_ready_pods_are_called_as_written() -> None:
    assert resolve("http://example.com/", "test", SERVICES, []).url == "http://example.com/"
    t = resolve("http://flagger-loadtester.test/", "test", SERVICES, [pod("10.0.0.5", False)])
    assert t.url == "http://flagger-loadtester.test/" and t.host is None
    t = resolve("http://flagger-loadtester.other/", "test", SERVICES, [pod("10.0.0.6", True)])
    assert t.host is None
