"""EnvoyFilter BOOTSTRAP patches: which select a proxy (Istio's scoping and order), merged
into a rendered bootstrap as Istio merges them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pilotfish.agent.bootstrap import patched, render_bootstrap
from pilotfish.agent.launch import agent_argv
from pilotfish.agent.settings import AgentSettings, HostPort
from pilotfish.api.bootstrap_patch import bootstrap_patches
from pilotfish.api.node import NodeInfo


def ef(
    name: str,
    value: dict[str, Any],
    ns: str = "default",
    selector: dict[str, str] | None = None,
    context: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    cp: dict[str, Any] = {"applyTo": "BOOTSTRAP", "patch": {"operation": "MERGE", "value": value}}
    if context is not None:
        cp["match"] = {"context": context}
    body: dict[str, Any] = {
        "kind": "EnvoyFilter",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"configPatches": [cp], **spec},
    }
    if selector is not None:
        body["spec"]["workloadSelector"] = {"labels": selector}
    return body


def pick(filters: list[dict[str, Any]], router: bool = False, **labels: str) -> list[Any]:
    return bootstrap_patches(
        filters,
        root_namespace="istio-system",
        namespace="default",
        labels=labels,
        router=router,
    )


def test_selection_and_order_follow_istio() -> None:
    filters = [
        ef("b", {"n": 2}, selector={"app": "reviews"}),
        ef("a", {"n": 1}),
        ef("root", {"n": 0}, ns="istio-system"),
        ef("late", {"n": -1}, priority=-5),
        ef("other-ns", {"n": 9}, ns="other"),
        ef("ratings", {"n": 9}, selector={"app": "ratings"}),
        ef("gw", {"n": 9}, context="GATEWAY"),
        ef("refs", {"n": 9}, targetRefs=[{"kind": "Gateway", "name": "g"}]),
    ]
    got = [p["n"] for p in pick(filters, app="reviews")]
    # priority first, then the root namespace, then creation time and name.
    assert got == [-1, 0, 1, 2]
    assert [p["n"] for p in pick(filters, router=True, app="x")] == [-1, 0, 1, 9]


def settings(tmp_path: Path, patches: Path | None = None) -> AgentSettings:
    node = NodeInfo(proxy_type="sidecar", ip="10.0.0.1", pod_name="p", namespace="default")
    return AgentSettings(
        node=node,
        work_dir=tmp_path,
        discovery_address=HostPort.parse("127.0.0.1:15010"),
        bootstrap_patches=patches,
    )


def test_patches_merge_into_the_rendered_bootstrap_and_reach_the_agent_argv(
    tmp_path: Path,
) -> None:
    path = tmp_path / "bootstrap-patches.json"
    tag = {"tag_name": "patched_tag", "regex": "^patched\\.((.+?)\\.)"}
    path.write_text(json.dumps([{"stats_config": {"stats_tags": [tag]}}]))
    s = settings(tmp_path, path)
    base = render_bootstrap(s)
    out = patched(base, s.bootstrap_patches)
    tags = out["stats_config"]["stats_tags"]
    assert tag in tags and len(tags) == len(base["stats_config"].get("stats_tags", [])) + 1
    # Everything else is kept (lists append, as Istio's MERGE).
    assert out["node"]["id"] == base["node"]["id"]
    assert out["static_resources"]["clusters"][0]["name"] == "xds-grpc"
    argv = agent_argv(s)
    assert argv[argv.index("--bootstrap-patches") + 1] == str(path)
    # Without a file, the bootstrap itself (no cost for proxies no patch selects).
    assert patched(base, None) is base


def test_a_patch_that_is_no_bootstrap_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"stats_configz": {}}]))
    with pytest.raises(ValueError, match=r"bad\.json.*stats_configz"):
        patched(render_bootstrap(settings(tmp_path)), path)
