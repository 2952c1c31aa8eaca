"""Istio's addon names in the local mesh: the forwarding Envoy and the ServiceEntries."""

from __future__ import annotations

from pathlib import Path

from pilotfish.config.validation import validate
from pilotfish.platform.local.addons import Forward, addon_services, addons_bootstrap
from pilotfish.platform.local.network import PodNetworkSettings
from pilotfish.platform.local.runtime_mesh import MeshSettings, addon_forwards, part_ports


def test_the_forwarder_listens_on_the_bridge_and_forwards_to_loopback() -> None:
    boot = addons_bootstrap("10.44.0.1", [Forward("prometheus", 9090, 19090)])
    (listener,) = boot["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "10.44.0.1", "port_value": 9090}
    (cluster,) = boot["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 19090}


def test_the_addon_services_are_valid_use_istios_ports_and_select_the_forwarder() -> None:
    objects = addon_services("10.44.0.1", prometheus=True)
    for body in objects:
        validate(body)
    by_name = {o["metadata"]["name"]: o for o in objects}
    workload = by_name["pilotfish-addons"]
    assert workload["kind"] == "WorkloadEntry" and workload["spec"]["address"] == "10.44.0.1"
    assert by_name["prometheus"]["spec"]["ports"] == [
        {"name": "http", "port": 9090, "targetPort": 9090}
    ]
    assert by_name["tracing"]["spec"]["ports"][0]["port"] == 80
    assert by_name["tracing"]["spec"]["ports"][0]["targetPort"] == 16686
    for name in ("prometheus", "tracing"):
        assert by_name[name]["spec"]["selector"] == workload["spec"]["labels"]
    names = [o["metadata"]["name"] for o in addon_services("10.44.0.1", False)]
    assert names == ["pilotfish-addons", "tracing"]


def test_the_mesh_forwards_its_own_loopback_ports(tmp_path: Path) -> None:
    s = MeshSettings(
        data_dir=tmp_path / "d", state_dir=tmp_path / "s", prometheus_port=19090,
        trace_query_port=26686, network=PodNetworkSettings(prefix="t", pod_cidr="10.44.0.0/24"),
    )  # fmt: skip
    forwards = {f.name: (f.listen, f.target) for f in addon_forwards(s, prometheus=True)}
    assert forwards == {"tracing": (16686, 26686), "prometheus": (9090, 19090)}
    assert ("10.44.0.1", 9090) in part_ports(s)["addons"]
