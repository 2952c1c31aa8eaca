"""The local runtime hands a starting sidecar the EnvoyFilter BOOTSTRAP patches that select
it (a file in the pod's run directory, ``--bootstrap-patches``), and none to the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from pilotfish.platform.local.commands import IptablesTools
from pilotfish.platform.local.network import PodNet, PodNetwork, PodNetworkSettings
from pilotfish.platform.local.runtime_pod import (
    BootstrapFilters,
    LocalPod,
    NetworkView,
    PodRunnerSettings,
)
from pilotfish.platform.local.users import MeshUsers

PATCH = {"stats_config": {"stats_tags": [{"tag_name": "t", "regex": "^t\\.((.+?)\\.)"}]}}


def envoy_filter(ns: str, labels: dict[str, str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "configPatches": [{"applyTo": "BOOTSTRAP", "patch": {"operation": "MERGE", "value": PATCH}}]
    }
    if labels is not None:
        spec["workloadSelector"] = {"labels": labels}
    return {"metadata": {"name": "boot", "namespace": ns}, "spec": spec}


def agent_argv(tmp_path: Path, labels: dict[str, str], filters: BootstrapFilters) -> list[str]:
    pod = LocalPod(
        {"metadata": {"name": "reviews-v1-abc", "namespace": "default", "labels": labels}},
        injected=True,
        network=PodNetwork(PodNetworkSettings(prefix="pft", pod_cidr="10.230.1.0/24")),
        users=cast(MeshUsers, None),
        settings=PodRunnerSettings(
            log_dir=tmp_path / "pods",
            run_dir=tmp_path / "run",
            workdir=tmp_path,
            discovery_address="10.230.1.1:15012",
            proxy_argv=("/py", "-m", "pilotfish.cli.main", "proxy"),
        ),
        tools=cast(IptablesTools, None),
        view=NetworkView(),
        bootstrap_filters=filters,
    )
    pod.net = PodNet(name="pft-x", ip="10.230.1.5", veth_host="pft-v")
    return pod._agent_argv()


def test_a_selected_sidecar_gets_its_patches_in_a_file(tmp_path: Path) -> None:
    filters = BootstrapFilters("istio-system", (envoy_filter("default", {"app": "reviews"}),))
    argv = agent_argv(tmp_path, {"app": "reviews"}, filters)
    path = Path(argv[argv.index("--bootstrap-patches") + 1])
    assert path == tmp_path / "run" / "reviews-v1-abc.default" / "bootstrap-patches.json"
    assert json.loads(path.read_text()) == [PATCH]


def test_a_sidecar_no_patch_selects_gets_no_file(tmp_path: Path) -> None:
    filters = BootstrapFilters(
        "istio-system",
        (envoy_filter("default", {"app": "ratings"}), envoy_filter("other", None)),
    )
    assert "--bootstrap-patches" not in agent_argv(tmp_path, {"app": "reviews"}, filters)
    assert "--bootstrap-patches" not in agent_argv(tmp_path, {"app": "reviews"}, BootstrapFilters())
    # Mesh-wide from the root namespace.
    root = BootstrapFilters("istio-system", (envoy_filter("istio-system", None),))
    assert "--bootstrap-patches" in agent_argv(tmp_path, {"app": "reviews"}, root)
