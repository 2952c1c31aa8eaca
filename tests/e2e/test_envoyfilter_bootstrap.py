"""EnvoyFilter BOOTSTRAP patches with pods: the runtime hands a starting sidecar the patches
that select it, and its Envoy runs the merged bootstrap (admin ``/config_dump``); a pod the
filter does not select starts with the plain bootstrap."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Mesh, bring_up

pytestmark = pytest.mark.e2e

SLEEP = ["python3", "-c", "import time; time.sleep(1e9)"]


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "command": SLEEP}]},
            },
        },
    }


BOOTSTRAP = {
    "apiVersion": "networking.istio.io/v1alpha3",
    "kind": "EnvoyFilter",
    "metadata": {"name": "bootstrap-cluster", "namespace": "default"},
    "spec": {
        "workloadSelector": {"labels": {"app": "boot"}},
        "configPatches": [
            {
                "applyTo": "BOOTSTRAP",
                "patch": {
                    "operation": "MERGE",
                    "value": {
                        "static_resources": {
                            "clusters": [
                                {
                                    "name": "bootstrap-patched",
                                    "type": "STATIC",
                                    "connect_timeout": "1s",
                                    "load_assignment": {"cluster_name": "bootstrap-patched"},
                                }
                            ]
                        }
                    },
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    with bring_up(tmp_path_factory.mktemp("envoyfilter")) as m:
        m.cli("label", "namespace", "default", "istio-injection=enabled", "--overwrite")
        yield m


def static_clusters(mesh: Mesh, pod: str) -> str:
    return mesh.local(
        "exec", pod, "-c", "istio-proxy", "--", "curl", "-s",
        "http://127.0.0.1:15000/config_dump?resource=static_clusters", check=False,
    ).stdout  # fmt: skip


def test_bootstrap_patch_reaches_the_selected_pod_when_it_restarts(
    mesh: Mesh, tmp_path: Path
) -> None:
    path = tmp_path / "docs.json"
    docs = {"apiVersion": "v1", "kind": "List", "items": [deployment("boot"), deployment("plain")]}
    path.write_text(json.dumps(docs))
    mesh.cli("apply", "-f", str(path))
    mesh.wait_pods_ready("default", 2)
    first = mesh.pod_named("boot")
    path.write_text(json.dumps(BOOTSTRAP))
    res = mesh.cli("apply", "-f", str(path))
    assert "take effect when a selected proxy starts" in res.stderr
    # A running proxy keeps its bootstrap (as in Istio): a restart takes the patch.
    assert "bootstrap-patched" not in static_clusters(mesh, first)
    mesh.cli("delete", "pod", first)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pods = mesh.wait_pods_ready("default", 2)
        names = [p["metadata"]["name"] for p in pods]
        if first not in names:
            break
        time.sleep(0.5)
    boot = static_clusters(mesh, mesh.pod_named("boot"))
    plain = static_clusters(mesh, mesh.pod_named("plain"))
    assert "bootstrap-patched" in boot and "xds-grpc" in boot, boot[:2000]
    assert "bootstrap-patched" not in plain and "xds-grpc" in plain, plain[:2000]
