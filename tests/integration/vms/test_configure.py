"""``pilotfish x workload entry configure`` against a real control plane: the files a workload
on another host joins with, and ``bootstrap-patches.json`` with exactly the EnvoyFilter
BOOTSTRAP patches that select the group's workloads (the agent's ``--config-dir`` reads it),
gone again once no filter selects them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.harness import Mesh

GROUP = """
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: {name: vmapp, namespace: default}
spec:
  metadata:
    labels: {app: vmapp}
  template:
    serviceAccount: vmapp
"""

FILTERS = """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: vm-stats, namespace: istio-system}
spec:
  workloadSelector: {labels: {app: vmapp}}
  configPatches:
  - applyTo: BOOTSTRAP
    patch:
      operation: MERGE
      value: {stats_config: {stats_tags: [{tag_name: vm, fixed_value: "yes"}]}}
---
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: others, namespace: default}
spec:
  workloadSelector: {labels: {app: other}}
  configPatches:
  - applyTo: BOOTSTRAP
    patch:
      operation: MERGE
      value: {stats_config: {stats_tags: [{tag_name: other, fixed_value: "yes"}]}}
"""


def configure(mesh: Mesh, tmp_path: Path) -> tuple[Path, str]:
    group = tmp_path / "group.yaml"
    group.write_text(GROUP)
    out = tmp_path / "vm-files"
    res = mesh.live().cli(
        "x", "workload", "entry", "configure", "-f", str(group), "-o", str(out), check=True
    )
    return out, res.stdout


def test_configure_writes_the_bootstrap_patches_that_select_the_group(
    mesh: Mesh, tmp_path: Path
) -> None:
    mesh.apply(GROUP)
    files, _ = configure(mesh, tmp_path)
    assert (files / "cluster.env").is_file()
    assert not (files / "bootstrap-patches.json").exists()

    mesh.apply(FILTERS)
    files, out = configure(mesh, tmp_path)
    assert "bootstrap-patches.json" in out
    patches = json.loads((files / "bootstrap-patches.json").read_text())
    assert patches == [{"stats_config": {"stats_tags": [{"tag_name": "vm", "fixed_value": "yes"}]}}]

    mesh.live().cli("delete", "envoyfilter", "vm-stats", "-n", "istio-system", check=True)
    files, _ = configure(mesh, tmp_path)
    assert not (files / "bootstrap-patches.json").exists()
