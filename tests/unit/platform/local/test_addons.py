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


def test_the_addon_service_entries_are_valid_and_use_istios_ports() -> None:
    services = {s["metadata"]["name"]: s for s in addon_services("10.44.0.1", prometheus=True)}
    for body in services.values():
        validate(body)
    assert services["prometheus"]["spec"]["ports"][0]["number"] == 9090
    tracing = services["tracing"]["spec"]
    assert tracing["ports"][0]["number"] == 80
    assert tracing["endpoints"] == [{"address": "10.44.0.1", "ports": {"http-query": 16686}}]
    assert [s["metadata"]["name"] for s in addon_services("10.44.0.1", False)] == ["tracing"]


def test_the_mesh_forwards_its_own_loopback_ports(tmp_path: Path) -> None:
    s = MeshSettings(
        data_dir=tmp_path / "d", state_dir=tmp_path / "s", prometheus_port=19090,
        trace_query_port=26686, network=PodNetworkSettings(prefix="t", pod_cidr="10.44.0.0/24"),
    )  # fmt: skip
    forwards = {f.name: (f.listen, f.target) for f in addon_forwards(s, prometheus=True)}
    assert forwards == {"tracing": (16686, 26686), "prometheus": (9090, 19090)}
    assert ("10.44.0.1", 9090) in part_ports(s)["addons"]
