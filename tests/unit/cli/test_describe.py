"""`pilotfish x describe pod`'s pure part: which Istio config applies to a pod."""

from __future__ import annotations

from typing import Any

import yaml

from pilotfish.cli.describe_cmd import PodFacts, describe_pod, pod_facts
from tests.integration.cli.test_describe import CONFIG


def _objects(text: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(text):
        doc.setdefault("metadata", {}).setdefault("namespace", "default")
        out.setdefault(doc["kind"], []).append(doc)
    return out


POD = PodFacts(
    "reviews-v2-abc", "default", {"app": "reviews", "version": "v2"}, ports=((9080, "reviews"),)
)


def test_a_pod_in_the_routed_subset_gets_no_warning() -> None:
    lines = describe_pod(POD, _objects(CONFIG))
    assert lines[:3] == [
        "Pod: reviews-v2-abc",
        "   Pod Revision: default",
        "   Pod Ports: 9080 (reviews)",
    ]
    assert "   Matching subsets: v2" in lines
    assert not any("No destinations match" in ln for ln in lines)
    assert "   Workload mTLS mode: STRICT" in lines


def test_workload_peer_authentication_wins_and_allow_nothing_is_named() -> None:
    more = (
        CONFIG
        + """
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: reviews-permissive}
spec:
  selector: {matchLabels: {app: reviews}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {"9080": {mode: DISABLE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: istio-system}
spec: {}
"""
    )
    lines = describe_pod(POD, _objects(more))
    assert "   Workload mTLS mode: PERMISSIVE" in lines
    assert "   Port Level mTLS mode: 9080: DISABLE" in lines
    assert "   default.istio-system, reviews-permissive.default" in lines
    assert "   ALLOW istio-system/allow-nothing (no rules: denies every request)" in lines


def test_pod_without_service_or_labels() -> None:
    lines = describe_pod(PodFacts("lonely", "default"), {})
    assert "Suggestion: add 'app' label to pod for Istio telemetry." in lines
    assert "WARNING: no Service selects this pod's labels" in lines
    assert "AuthorizationPolicies: none (every request is allowed)" in lines


def test_pod_from_a_stored_pod_or_a_connected_proxy() -> None:
    stored = {"metadata": {"labels": {"app": "x"}}, "spec": {"serviceAccountName": "sa",
              "containers": [{"name": "x", "ports": [{"containerPort": 80}]}]}}  # fmt: skip
    facts = pod_facts("x-1", "default", stored, [])
    assert facts is not None and facts.ports == ((80, "x"),) and not facts.has_proxy
    proxy = {"namespace": "default", "pod_name": "y", "labels": {"app": "y"}}
    facts = pod_facts("y", "default", None, [proxy])
    assert facts is not None and facts.labels == {"app": "y"} and facts.has_proxy
    assert pod_facts("z", "default", None, [proxy]) is None
