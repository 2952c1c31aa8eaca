"""VHDS (mesh config ``virtualHostDiscovery``) on real traffic through real Envoys.

A VirtualService change reaches the client's Envoy as the one virtual host it changed: the
route configuration itself is not sent again (its RDS version stays), the VHDS version moves,
the Envoy's route configuration holds every service's virtual host, and a request loop running
across the change sees no failed request; a service removed takes its virtual host out of the
Envoy. The make-before-break scenario of ``test_config_change`` (weights, a subset added and
removed, a route added and removed, the VirtualService deleted) runs again with VHDS on.

Off (``virtualHostDiscovery: false``): whole route configurations over RDS, and switching on
and off again under a request loop with no failed request.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.integration.harness import Mesh, Sidecar, eventually, filler_services
from tests.integration.mesh import test_config_change as config_change
from tests.integration.mesh.test_config_change import Loop
from tests.integration.mesh.test_routing import SERVICES, weighted

VHDS_OFF = """
apiVersion: install.istio.io/v1alpha1
kind: IstioOperator
metadata: {name: vhds, namespace: istio-system}
spec:
  meshConfig: {virtualHostDiscovery: false}
"""
VHDS_ON = VHDS_OFF.replace("false", "true")

FILLERS = 5
FILLER_SERVICES = filler_services(FILLERS, 9080)
REVIEWS_VHOST = "reviews.default.svc.cluster.local:9080"


def over_vhds(config: dict[str, Any], vhost: str) -> str:
    """Over VHDS a virtual host is named as its resource: "<route config>/<host:port>" (the
    route config of a sidecar without capture is named after its outbound port)."""
    return f"{config['name']}/{vhost}"


def route_configs(sc: Sidecar) -> list[dict[str, Any]]:
    dump = httpx.get(f"http://127.0.0.1:{sc.admin_port}/config_dump", timeout=5).json()
    return [
        rc["route_config"]
        for section in dump["configs"]
        for rc in section.get("dynamic_route_configs", [])
    ]


def xds_state(mesh: Mesh, pod: str) -> dict[str, Any]:
    out = mesh.cp.cli("proxy-status", "-o", "json", check=True).stdout
    [proxy] = [p for p in json.loads(out)["items"] if p.get("pod_name") == pod]
    types: dict[str, Any] = proxy["types"]
    return types


def test_a_virtual_service_change_reaches_envoy_as_one_virtual_host(mesh: Mesh) -> None:
    mesh.apply(VHDS_ON + "---\n" + SERVICES + FILLER_SERVICES + "---" + weighted({"v1": 100}))
    for v in ("v1", "v2", "v3"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, what="first route")

    # The route config carries vhds and the services' virtual hosts came over VHDS.
    [config] = route_configs(client)
    assert "vhds" in config
    # Each named as its resource, "<route config>/<host:port>".
    reviews_vhds = over_vhds(config, REVIEWS_VHOST)
    fillers = {
        over_vhds(config, f"filler-{i}.default.svc.cluster.local:9080") for i in range(FILLERS)
    }
    names = {v["name"] for v in config.get("virtual_hosts", [])}
    assert reviews_vhds in names
    assert fillers <= names
    eventually(
        lambda: xds_state(mesh, client.name).get("VHDS", {}).get("state") == "SYNCED",
        what="VHDS synced",
    )
    before = xds_state(mesh, client.name)

    loop = Loop(lambda path: client.request("reviews:9080", path))
    loop.start()
    try:
        eventually(lambda: sum(loop.results.values()) >= 50, 30, "requests before the change")
        mesh.apply(weighted({"v2": 100}))
        eventually(
            lambda: client.request("reviews:9080").json()["version"] == "v2", what="the flip"
        )
        eventually(lambda: sum(loop.results.values()) >= 150, 30, "requests after the change")
    finally:
        loop.stopped.set()
        loop.join(10)
    total = sum(loop.results.values())
    assert loop.results[200] == total, f"{total - loop.results[200]} failed: {loop.errors[:5]}"

    eventually(lambda: xds_state(mesh, client.name)["VHDS"].get("state") == "SYNCED", what="synced")
    after = xds_state(mesh, client.name)
    # The route config was not sent again; virtual hosts were.
    assert after["RDS"]["acked_version"] == before["RDS"]["acked_version"]
    assert after["VHDS"]["acked_version"] != before["VHDS"]["acked_version"]
    # Envoy still holds every virtual host, the changed one with its new route.
    [config] = route_configs(client)
    by_name = {v["name"]: v for v in config.get("virtual_hosts", [])}
    assert fillers <= set(by_name)
    assert "|v2|" in json.dumps(by_name[reviews_vhds]["routes"])

    # What the control plane would send and what the Envoy runs agree (virtual hosts merged
    # into their route config on both sides), and proxy-config shows them.
    def matches() -> bool:
        out = mesh.cp.cli("proxy-status", f"{client.name}.default", check=True).stdout
        return "Routes Match" in out

    eventually(matches, 20, "the control plane's routes and the Envoy's to match")
    shown = mesh.cp.cli(
        "proxy-config", "route", f"{client.name}.default", "-o", "json", check=True
    ).stdout
    assert reviews_vhds in shown
    # The table names virtual hosts as over RDS.
    table = mesh.cp.cli("proxy-config", "route", f"{client.name}.default", check=True).stdout
    assert REVIEWS_VHOST in table and reviews_vhds not in table

    # A service removed: its virtual host leaves the Envoy (VHDS removed_resources), and a
    # request for it no longer routes (404: no virtual host matches it; without capture and
    # under ALLOW_ANY the route config has no `*` one).
    filler = "filler-0.default.svc.cluster.local:9080"
    assert client.request(filler).status_code != 404
    assert mesh.cp.cli("delete", "service", "filler-0", "-n", "default").returncode == 0
    eventually(
        lambda: (
            over_vhds(config, filler)
            not in {v["name"] for v in route_configs(client)[0].get("virtual_hosts", [])}
        ),
        what="the removed service's virtual host gone from the Envoy",
    )
    assert client.request(filler).status_code == 404


def test_no_failed_request_while_config_changes_over_vhds(mesh: Mesh) -> None:
    mesh.apply(VHDS_ON)
    config_change.test_no_failed_request_while_config_changes(mesh)


def test_switched_off_whole_route_configs_over_rds_and_back_without_a_failed_request(
    mesh: Mesh,
) -> None:
    mesh.apply(VHDS_OFF + "---\n" + SERVICES + FILLER_SERVICES + "---" + weighted({"v1": 100}))
    for v in ("v1", "v2"):
        mesh.add(f"reviews-{v}", {"app": "reviews", "version": v})
    client = mesh.add("productpage", {"app": "productpage"}, app_port=None)
    eventually(lambda: client.request("reviews:9080").status_code == 200, what="first route")

    # Switched off: the Envoy's route config came whole over RDS, no vhds, no VHDS stream.
    [config] = route_configs(client)
    assert "vhds" not in config
    assert REVIEWS_VHOST in {v["name"] for v in config.get("virtual_hosts", [])}
    eventually(lambda: xds_state(mesh, client.name)["RDS"].get("state") == "SYNCED", what="RDS")
    before = xds_state(mesh, client.name)
    assert "VHDS" not in before or not before["VHDS"].get("acked_version")

    # A change sends the whole route config again; traffic follows it.
    mesh.apply(weighted({"v2": 100}))
    eventually(lambda: client.request("reviews:9080").json()["version"] == "v2", what="the flip")
    eventually(
        lambda: (
            xds_state(mesh, client.name)["RDS"].get("acked_version")
            != before["RDS"]["acked_version"]
        ),
        what="a new route config ACKed",
    )
    [config] = route_configs(client)
    assert "|v2|" in json.dumps(
        next(v for v in config["virtual_hosts"] if v["name"] == REVIEWS_VHOST)["routes"]
    )

    # Switching on, then off again, under a request loop: no request fails.
    loop = Loop(lambda path: client.request("reviews:9080", path))
    loop.start()
    try:
        eventually(lambda: sum(loop.results.values()) >= 30, 30, "requests before the switch")
        mesh.apply(VHDS_ON)
        eventually(lambda: "vhds" in route_configs(client)[0], what="VHDS switched on")
        eventually(
            lambda: (
                over_vhds(route_configs(client)[0], REVIEWS_VHOST)
                in {v["name"] for v in route_configs(client)[0].get("virtual_hosts", [])}
            ),
            what="the virtual hosts over VHDS",
        )
        mark = sum(loop.results.values())
        eventually(lambda: sum(loop.results.values()) >= mark + 30, 30, "requests over VHDS")
        mesh.apply(VHDS_OFF)
        eventually(lambda: "vhds" not in route_configs(client)[0], what="VHDS switched off")
        mark = sum(loop.results.values())
        eventually(lambda: sum(loop.results.values()) >= mark + 30, 30, "requests over RDS")
    finally:
        loop.stopped.set()
        loop.join(10)
    total = sum(loop.results.values())
    assert loop.results[200] == total, f"{total - loop.results[200]} failed: {loop.errors[:5]}"
    assert client.request("reviews:9080").json()["version"] == "v2"
    [config] = route_configs(client)
    assert REVIEWS_VHOST in {v["name"] for v in config.get("virtual_hosts", [])}
