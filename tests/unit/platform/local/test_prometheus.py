"""The local mesh's Prometheus: which pods it scrapes and how, its config and command line,
and the app metrics a sidecar's agent is told to merge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import yaml

from pilotfish.platform.local.commands import IptablesTools
from pilotfish.platform.local.network import PodNet, PodNetwork, PodNetworkSettings
from pilotfish.platform.local.prometheus import (
    PodScrape,
    PrometheusLayout,
    config_for,
    pod_scrape,
    pod_targets,
    prometheus_argv,
    render_config,
    write_targets,
)
from pilotfish.platform.local.runtime_pod import LocalPod, NetworkView, PodRunnerSettings
from pilotfish.platform.local.users import MeshUsers

INJECTED = "sidecar.istio.io/status"


def pod(
    name: str,
    *,
    ip: str | None = "10.244.0.5",
    phase: str = "Running",
    injected: bool = True,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    ann = dict(annotations or {})
    if injected:
        ann[INJECTED] = "{}"
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": labels if labels is not None else {"app": "reviews", "version": "v1"},
            "annotations": ann,
        },
        "status": {"phase": phase, "podIP": ip},
    }


def test_pod_scrape_follows_istio_annotations() -> None:
    assert pod_scrape({}) is None
    assert pod_scrape({"prometheus.io/scrape": "true"}) is None  # no port
    assert pod_scrape({"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}) == (
        PodScrape(9100, "/metrics")
    )
    assert pod_scrape(
        {"prometheus.io/scrape": "True", "prometheus.io/port": "8080", "prometheus.io/path": "m"}
    ) == PodScrape(8080, "/m")
    assert pod_scrape({"prometheus.io/scrape": "false", "prometheus.io/port": "1"}) is None
    assert pod_scrape({"prometheus.io/scrape": "true", "prometheus.io/port": "99999"}) is None


def test_sidecar_pods_are_scraped_on_the_agent_port() -> None:
    targets = pod_targets(
        [
            pod("reviews-v1-a", ip="10.244.0.7"),
            pod("pending", ip=None, phase="Pending"),
            pod("gone", phase="Succeeded"),
            pod("legacy", injected=False, labels={"app": "sleep"}),
            pod(
                "exporter",
                ip="10.244.0.9",
                injected=False,
                annotations={"prometheus.io/scrape": "true", "prometheus.io/port": "9100"},
                labels={},
            ),
            pod("optout", annotations={"prometheus.io/scrape": "false"}),
        ],
        INJECTED,
    )
    assert targets == [
        {
            "targets": ["10.244.0.9:9100"],
            "labels": {"namespace": "default", "pod": "exporter", "__metrics_path__": "/metrics"},
        },
        {
            "targets": ["10.244.0.7:15020"],
            "labels": {
                "namespace": "default",
                "pod": "reviews-v1-a",
                "app": "reviews",
                "version": "v1",
                "__metrics_path__": "/stats/prometheus",
            },
        },
    ]


def test_config_scrapes_control_plane_gateway_and_pods(tmp_path: Path) -> None:
    layout = PrometheusLayout(tmp_path / "prometheus")
    config = config_for(
        api="127.0.0.1:15014",
        gateway_agent="127.0.0.1:15020",
        targets_dir=layout.targets_dir,
        self_address="127.0.0.1:9090",
    )
    assert config["global"]["scrape_interval"] == "5s"
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["istiod"]["static_configs"][0]["targets"] == ["127.0.0.1:15014"]
    assert jobs["istiod"]["static_configs"][0]["labels"]["app"] == "istiod"
    assert jobs["istio-ingressgateway"]["metrics_path"] == "/stats/prometheus"
    assert jobs["kubernetes-pods"]["file_sd_configs"][0]["files"] == [
        str(layout.targets_dir / "*.json")
    ]
    assert yaml.safe_load(render_config(config)) == config
    argv = prometheus_argv("/usr/bin/prometheus", layout, "127.0.0.1:9090")
    assert f"--config.file={layout.config}" in argv
    assert f"--storage.tsdb.path={layout.data}" in argv
    assert "--web.listen-address=127.0.0.1:9090" in argv
    assert "--web.enable-lifecycle" in argv


def test_write_targets_is_atomic_json(tmp_path: Path) -> None:
    path = tmp_path / "t" / "pods.json"
    write_targets(path, [{"targets": ["1.2.3.4:15020"], "labels": {}}])
    assert json.loads(path.read_text()) == [{"targets": ["1.2.3.4:15020"], "labels": {}}]
    assert [p.name for p in path.parent.iterdir()] == ["pods.json"]


def test_agent_is_told_the_apps_metrics(tmp_path: Path) -> None:
    def agent_argv(annotations: dict[str, str]) -> list[str]:
        network = PodNetwork(PodNetworkSettings(prefix="pft", pod_cidr="10.230.1.0/24"))
        local = LocalPod(
            {"metadata": {"name": "p", "namespace": "default", "annotations": annotations}},
            injected=True,
            network=network,
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
        )
        local.net = PodNet(name="pft-x", ip="10.230.1.5", veth_host="pft-v")
        return local._agent_argv()

    argv = agent_argv(
        {"prometheus.io/scrape": "true", "prometheus.io/port": "9080", "prometheus.io/path": "/m"}
    )
    assert argv[argv.index("--app-metrics-port") + 1] == "9080"
    assert argv[argv.index("--app-metrics-path") + 1] == "/m"
    assert "--app-metrics-port" not in agent_argv({})


def test_the_mesh_owns_prometheus_port_and_config(tmp_path: Path) -> None:
    from pilotfish.dashboard.graph import recording_rules
    from pilotfish.platform.local.hostmeshes import conflicts
    from pilotfish.platform.local.prometheus import graph_rules_yaml
    from pilotfish.platform.local.runtime_mesh import (
        MeshSettings,
        mesh_record,
        prometheus_binary,
        prometheus_yaml,
    )

    s = MeshSettings(data_dir=tmp_path / "d", state_dir=tmp_path / "s", api_listen="0.0.0.0:1514")
    assert ("127.0.0.1", 9090) in mesh_record(s).ports
    assert ("127.0.0.1", 20001) in mesh_record(s).ports  # the dashboard, Kiali's port
    other = MeshSettings(
        data_dir=tmp_path / "d2",
        state_dir=tmp_path / "s2",
        api_listen="127.0.0.1:2",
        gateway_ports=((80, 3),),
        gateway_admin_port=4,
        gateway_agent_port=5,
        gateway_readiness_port=6,
        trace_query_port=7,
        dashboard_port=8,
        network=PodNetworkSettings(
            prefix="pfz", pod_cidr="10.250.0.0/16", service_cidr="10.251.0.0/16"
        ),
    )
    assert conflicts(mesh_record(other), mesh_record(s)) == ["ports 127.0.0.1:9090"]
    config = yaml.safe_load(prometheus_yaml(s))
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["istiod"]["static_configs"][0]["targets"] == ["127.0.0.1:1514"]
    assert jobs["kubernetes-pods"]["file_sd_configs"][0]["files"] == [
        str(tmp_path / "s" / "prometheus" / "targets" / "*.json")
    ]
    # the dashboard graph's recording rules (its recorded response times)
    assert config["rule_files"] == [str(tmp_path / "s" / "prometheus" / "rules" / "graph.yml")]
    assert yaml.safe_load(graph_rules_yaml()) == recording_rules()
    assert prometheus_binary(s, which=lambda name: None) is None
    assert prometheus_binary(s, which=lambda name: "/usr/bin/" + name) == "/usr/bin/prometheus"
    no_prom = MeshSettings(data_dir=tmp_path, state_dir=tmp_path, prometheus_port=None)
    assert prometheus_binary(no_prom, which=lambda name: "/x") is None
    assert all(port != 9090 for _, port in mesh_record(no_prom).ports)
